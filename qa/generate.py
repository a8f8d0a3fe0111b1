"""Generated answers: an OpenAI-compatible chat-completions server writes an answer from the numbered passages.

The only module that speaks to the model server of ``QA_LLM_URL`` (Ollama, llama.cpp's server, vLLM:
``POST .../v1/chat/completions`` with ``"stream": true``, answered by server-sent events
``data: {"choices": [{"delta": {"content": "..."}}]}`` and a last ``data: [DONE]``). The model is asked
to cite the passages it was shown as [n]; citations of passages it was not shown are removed, and the
result says so. Nothing here raises for the server's sake: a server that is down, slow or answers
garbage gives a result with an empty text and a one-line ``notice``, and the chat keeps its quotes.

    >>> endpoint = Endpoint.from_settings(Settings.from_env())                 # doctest: +SKIP
    >>> for draft in stream(endpoint, "Who went to Mexico?", passages):        # doctest: +SKIP
    ...     print(draft.text)   # the answer so far; the last one has done=True, citations checked
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx

from .errors import GenerationError

# What the model is shown and may write: enough for a few paragraphs, never a runaway stream.
MAX_PASSAGE_CHARS = 2000
MAX_TURN_CHARS = 1000
EARLIER_TURNS = 2  # as many as qa.chat reads for a follow-up
MAX_TOKENS = 700
MAX_ANSWER_CHARS = 6000
MAX_ERROR_CHARS = 200  # of a server's own error message, quoted in the notice
MAX_ERROR_BODY = 65_536  # bytes read of an error's body, for its message
MAX_WHOLE_BODY = 1_000_000  # bytes read of an answer sent whole (a server that ignores "stream")
# [3], [1, 2], [2-4]: one citation group; its numbers are checked against the passages shown.
CITATION = re.compile(
    r"(?P<space>[ \t]*)\[(?P<numbers>\d{1,4}(?:\s*[-–]\s*\d{1,4})?(?:\s*[,;]\s*\d{1,4}(?:\s*[-–]\s*\d{1,4})?)*)\]"
)
_PARTIAL_CITATION = re.compile(r"\[[\d\s,;\-–]*$")  # a citation still arriving at the end of a draft

SYSTEM = (
    "You answer questions about a collection of news articles, using only the numbered passages the user "
    "gives you. Answer in a few sentences, in your own words. After every claim, cite the passages that "
    "support it with their numbers in square brackets, like [1] or [2, 3]. Cite only the numbers shown. "
    "If the passages do not answer the question, say so plainly instead of guessing; never use outside knowledge."
)


def completions_url(url: str) -> str:
    """The chat-completions URL that ``QA_LLM_URL`` names; ValueError saying what to write for a bad one.

    The base URL of an OpenAI-compatible API, as its clients take it (``.../v1``), gets ``/chat/completions``;
    a bare server address gets ``/v1/chat/completions``; the full path is taken as it is.

    >>> completions_url("http://localhost:11434/v1")
    'http://localhost:11434/v1/chat/completions'
    >>> completions_url("http://localhost:8080")
    'http://localhost:8080/v1/chat/completions'
    >>> completions_url("https://llm.example.org/v1/chat/completions/")
    'https://llm.example.org/v1/chat/completions'
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"QA_LLM_URL={url[:200]!r} is not an http(s) URL: give the server's OpenAI-compatible base URL, "
            "e.g. http://localhost:11434/v1 (Ollama) or http://localhost:8080/v1 (llama.cpp's llama-server)"
        )
    if parts.username or parts.password:
        raise ValueError("QA_LLM_URL holds a user or password: put the key in QA_LLM_API_KEY instead")
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions" if path else "/v1/chat/completions"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


@dataclass(frozen=True)
class Endpoint:
    """Where and how to ask for an answer: the chat-completions URL, the model, the key and the timeouts."""

    url: str
    model: str
    api_key: str = field(default="", repr=False)
    connect_timeout: float = 5.0
    read_timeout: float = 60.0

    @classmethod
    def from_settings(cls, settings) -> Endpoint | None:
        """The endpoint of ``settings.llm_url``, or None when it is not set (generated answers are off)."""
        if not settings.llm_url:
            return None
        return cls(
            completions_url(settings.llm_url),
            settings.llm_model,
            settings.llm_api_key,
            settings.llm_connect_timeout,
            settings.llm_read_timeout,
        )

    @property
    def server(self) -> str:
        """The server as notices name it: scheme, host and port, never a path, query or key.

        >>> Endpoint("http://localhost:11434/v1/chat/completions", "llama3.2").server
        'http://localhost:11434'
        """
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class Generated:
    """A generated answer, or a draft of one while it streams (``done`` False).

    ``text`` is the model's answer with citations of passages it was not shown removed; ``citations``
    the passages it cites (1-based, in order of first citation); ``removed`` the numbers taken out;
    ``notice`` one line saying why there is no answer (the server is down, slow, or answered garbage)
    or why it is cut.
    """

    text: str
    citations: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()
    notice: str = ""
    done: bool = True

    @property
    def note(self) -> str:
        """A line for the reader about the citations: removed ones, or none at all ("" when all is well).

        >>> Generated("Blinken went [1].", (1,), (7, 0)).note
        'Removed citations [7] and [0]: the answer cited passages that were not shown.'
        """
        if self.removed:
            marks = " and ".join(", ".join(f"[{n}]" for n in self.removed).rsplit(", ", 1))
            plural = "s" if len(self.removed) > 1 else ""
            return f"Removed citation{plural} {marks}: the answer cited passages that were not shown."
        if self.done and self.text and not self.citations:
            return "This answer cites no passage: check it against the quotes below."
        return ""


def stream(endpoint: Endpoint, question: str, passages: Sequence, turns: Sequence = ()) -> Iterator[Generated]:
    """Ask ``endpoint`` to answer ``question`` from the numbered ``passages``; yield the answer as it comes.

    Args:
        endpoint: the server and model (``Endpoint.from_settings``).
        question: the newest question.
        passages: the passages shown, numbered from 1 in this order (``qa.search.Passage``).
        turns: the conversation's earlier turns, oldest first (``qa.chat.Turn``), for follow-ups.

    Yields:
        Drafts (``done`` False) as pieces arrive, then the checked answer (``done`` True): on any failure of
        the server, an empty text and a ``notice`` (a half-streamed answer can't be trusted, so it is dropped).
    """
    text, reason = "", ""
    pieces = _pieces(endpoint, messages(question, passages, turns))
    try:
        for piece, why in pieces:
            text, reason = text + piece, why or reason  # a last chunk may carry usage only, no reason
            if len(text) > MAX_ANSWER_CHARS:
                text, reason = text[:MAX_ANSWER_CHARS], "cut"
                break
            if piece:
                yield _checked(_PARTIAL_CITATION.sub("", text), len(passages), done=False)
    except GenerationError as e:
        yield Generated("", notice=f"No generated answer: {e}")
        return
    finally:
        pieces.close()  # the connection goes as soon as the answer is whole, cut, or no longer wanted
    if not text.strip():
        yield Generated("", notice=f"No generated answer: the model at {endpoint.server} returned an empty answer.")
        return
    cut = "The answer was cut at its length limit." if reason in ("length", "cut") else ""
    yield _checked(_PARTIAL_CITATION.sub("", text), len(passages), notice=cut)  # a cut answer may end in "[1"


def messages(question: str, passages: Sequence, turns: Sequence = ()) -> list[dict]:
    """The chat messages sent: the instructions, the earlier turns, then the passages and the question.

    Each earlier turn is its question and the sentences the chat quoted for it (what qa answered).

    >>> class P: title, source, date, text = "Visit", "Wire", "2021-10-08", "Blinken went to Mexico."
    >>> print(messages("Who went?", [P()])[-1]["content"])
    Passages:
    [1] Visit (Wire, 2021-10-08)
    Blinken went to Mexico.
    <BLANKLINE>
    Question: Who went?
    """
    out = [{"role": "system", "content": SYSTEM}]
    for turn in list(turns)[-EARLIER_TURNS:]:
        out.append({"role": "user", "content": turn.question[:MAX_TURN_CHARS]})
        said = " ".join(turn.quotes)[:MAX_TURN_CHARS] or "Nothing in the articles answered this."
        out.append({"role": "assistant", "content": said})
    shown = "\n\n".join(_numbered(n, p) for n, p in enumerate(passages, start=1))
    out.append({"role": "user", "content": f"Passages:\n{shown}\n\nQuestion: {question}"})
    return out


def _numbered(n: int, p) -> str:
    meta = ", ".join(x for x in (p.source, p.date) if x)
    return f"[{n}] {p.title}{f' ({meta})' if meta else ''}\n{p.text[:MAX_PASSAGE_CHARS]}"


def check_citations(text: str, shown: int) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """``text`` without citations of passages outside 1..``shown``; the numbers it cites, and those removed.

    >>> check_citations("Blinken went [1]. He spoke [2, 7]. Nobody [0].", 5)
    ('Blinken went [1]. He spoke [2]. Nobody.', (1, 2), (7, 0))
    """
    cited: dict[int, None] = {}
    removed: dict[int, None] = {}

    def group(match: re.Match) -> str:
        kept = []
        for n in _numbers(match["numbers"]):
            (cited if 1 <= n <= shown else removed)[n] = None
            if 1 <= n <= shown and n not in kept:
                kept.append(n)
        # A group left empty goes with the space before it ("Nobody [0]." -> "Nobody.").
        return f"{match['space']}[{', '.join(map(str, kept))}]" if kept else ""

    return CITATION.sub(group, text), tuple(cited), tuple(removed)


def _numbers(group: str) -> list[int]:
    """The numbers of a citation group: "1, 3-4" -> [1, 3, 4] (a range of more than 50 is read as its ends)."""
    out = []
    for item in re.split(r"\s*[,;]\s*", group.strip()):
        a, _, b = re.sub(r"\s*[-–]\s*", "-", item).partition("-")
        lo, hi = int(a), int(b or a)
        out.extend(range(lo, hi + 1) if 0 <= hi - lo <= 50 else (lo, hi))
    return out


def _checked(text: str, shown: int, notice: str = "", done: bool = True) -> Generated:
    checked, cited, removed = check_citations(text.strip(), shown)
    return Generated(checked, cited, removed, notice, done)


def _pieces(endpoint: Endpoint, chat: list[dict]) -> Iterator[tuple[str, str]]:
    """(text, finish reason) pairs as the server streams them; GenerationError with a one-line reason."""
    body = {"model": endpoint.model, "messages": chat, "stream": True, "max_tokens": MAX_TOKENS, "temperature": 0}
    headers = {"Accept": "text/event-stream"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    timeout = httpx.Timeout(endpoint.read_timeout, connect=endpoint.connect_timeout)
    where, received = endpoint.server, False
    try:
        with httpx.Client(timeout=timeout) as client:
            with client.stream("POST", endpoint.url, json=body, headers=headers) as response:
                _check_status(response, where)
                for piece in _events(response, where):
                    received = True
                    yield piece
    except httpx.ConnectTimeout:
        raise GenerationError(
            f"{where} did not accept a connection within {endpoint.connect_timeout:g} s (QA_LLM_CONNECT_TIMEOUT)."
        ) from None
    except httpx.ConnectError as e:
        raise GenerationError(f"can't connect to {where} ({_short(e)}): is the model server running?") from None
    except httpx.ReadTimeout:
        when = "mid-answer" if received else "before answering"
        raise GenerationError(
            f"{where} sent nothing for {endpoint.read_timeout:g} s {when} (QA_LLM_READ_TIMEOUT)."
        ) from None
    except (httpx.RemoteProtocolError, httpx.ReadError):
        raise GenerationError(f"the connection to {where} broke off mid-answer.") from None
    except httpx.HTTPError as e:
        raise GenerationError(f"the request to {where} failed ({_short(e)}).") from None


def _check_status(response: httpx.Response, where: str) -> None:
    if response.status_code != 200:
        said = _said(_head(response, MAX_ERROR_BODY).decode("utf-8", "replace"))
        raise GenerationError(f"{where} answered HTTP {response.status_code}{said}.")


def _head(response: httpx.Response, limit: int) -> bytes:
    """At most the first ``limit`` bytes of the body: a server's page or error is not read whole."""
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    return body[:limit]


def _events(response: httpx.Response, where: str) -> Iterator[tuple[str, str]]:
    """The (content, finish reason) of each server-sent event; a whole JSON completion is taken too."""
    if "text/event-stream" not in response.headers.get("content-type", ""):
        yield _whole(response, where)  # a server that ignores "stream" answers all at once
        return
    finished = False
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue  # blank lines, ": comments", "event:" and "id:" fields
        data = line[5:].strip()
        if data == "[DONE]":
            return
        piece, reason = _delta(_json(data, where), where)
        finished = finished or bool(reason)
        yield piece, reason
    if not finished:
        raise GenerationError(f"the stream from {where} ended mid-answer (no [DONE]).")


def _whole(response: httpx.Response, where: str) -> tuple[str, str]:
    message = _first_choice(_json(_head(response, MAX_WHOLE_BODY).decode("utf-8", "replace"), where), where)
    content = message.get("message", {}).get("content") if isinstance(message.get("message"), dict) else None
    if not isinstance(content, str):
        raise GenerationError(f"{where} answered something that is not a chat completion.")
    return content, str(message.get("finish_reason") or "stop")


def _delta(event: object, where: str) -> tuple[str, str]:
    choice = _first_choice(event, where)
    if not choice:
        return "", ""  # e.g. a last chunk with usage only
    delta = choice.get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    if content is not None and not isinstance(content, str):
        raise GenerationError(f"{where} streamed something that is not an answer's text.")
    return content or "", str(choice.get("finish_reason") or "")


def _first_choice(event: object, where: str) -> dict:
    if not isinstance(event, dict):
        raise GenerationError(f"{where} answered something that is not an OpenAI-style completion.")
    if "error" in event:
        error = event["error"]
        said = error.get("message") if isinstance(error, dict) else error
        raise GenerationError(f"{where} reported an error{_said(str(said))}.")
    choices = event.get("choices")
    if not isinstance(choices, list):
        raise GenerationError(f"{where} answered something that is not an OpenAI-style completion.")
    return choices[0] if choices and isinstance(choices[0], dict) else {}


def _json(data: str, where: str) -> object:
    try:
        return json.loads(data)
    except ValueError:
        raise GenerationError(f"{where} answered something that is not JSON: {_cut(data)!r}.") from None


def _said(text: str) -> str:
    """': <the server's own message>' from an error body (JSON or text), cut to one short line."""
    try:
        body = json.loads(text)
        error = body.get("error", body) if isinstance(body, dict) else body
        text = str(error.get("message", error) if isinstance(error, dict) else error)
    except ValueError:
        pass
    text = _cut(text)
    return f": {text}" if text else ""


def _short(e: Exception) -> str:
    return _cut(str(e)) or type(e).__name__


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
