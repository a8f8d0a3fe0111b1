"""The chat's generated answers (QA_LLM_URL): the model's answer streamed into the reply, above its quotes.

Off unless ``QA_LLM_URL`` is set. After the chat's reply (the quoted sentences, at once), a second
event asks the model (``qa.generate``) and rewrites that reply as its answer comes, the quotes kept
under it. Whatever the server does, the quotes stay: one that is down, slow or answers garbage
leaves them with a one-line notice, never an error.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr

from .. import generate
from ..chat import Answer
from . import render

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ticket:
    """The answer to write, numbered: a session writes only its newest (``Writer.ticket``)."""

    number: int
    answer: Answer


def write(endpoint: generate.Endpoint, history, answer: Answer | None, turns) -> Iterator[list[dict]]:
    """The chat ``history`` with its last reply rewritten as the model's answer comes, the quotes under it.

    Args:
        endpoint: the model server (``generate.Endpoint``).
        history: the chat's messages, the last one being ``answer``'s reply.
        answer: what the chat found (``chat.Answer``); nothing is written when it found nothing to answer from.
        turns: the conversation's turns, ``answer``'s own last (``qa.chat.Turn``).

    Yields:
        The history: "Writing an answer…", then each draft, then the checked answer or the notice.
    """
    if not _generates(answer):
        yield gr.skip()
        return
    history, earlier = list(history), tuple(turns or ())[:-1]  # the turns before this answer's own

    def shown(generated) -> list[dict]:
        history[-1] = {"role": "assistant", "content": render.generated_reply(answer, generated, endpoint.model)}
        return history

    yield shown(None)
    try:
        for generated in generate.stream(endpoint, answer.question, answer.passages, earlier):
            yield shown(generated)
    except Exception as e:  # a bug here must not cost the user the quotes already shown
        log.exception("writing an answer failed")
        yield shown(generate.Generated("", notice=f"No generated answer: it failed ({type(e).__name__})."))


def _generates(answer: Answer | None) -> bool:
    """Whether to ask the model at all: not when the chat found nothing in the articles that answers."""
    return answer is not None and bool(answer.passages) and answer.relevant


class Writer:
    """Writes each session's newest answer; a newer question or a new conversation stops the one under way.

    The one stopped shows nothing more (it would overwrite the newer chat), and its connection closes at
    the model's next piece, so that the model stops writing for nobody.
    """

    def __init__(self, endpoint: generate.Endpoint) -> None:
        self.endpoint = endpoint
        self._numbers = itertools.count(1)
        self._newest: dict[str, int] = {}  # session -> the number of the answer it may write
        self._lock = threading.Lock()  # a finished answer's clean-up must not remove a newer one's ticket

    @classmethod
    def of(cls, settings) -> Writer | None:
        """A writer for ``settings.llm_url``, or None when generated answers are off."""
        endpoint = generate.Endpoint.from_settings(settings)
        return cls(endpoint) if endpoint else None

    def ticket(self, request: gr.Request, answer: Answer | None) -> Ticket | None:
        """Make ``answer`` the one its session may write (None: none, e.g. an empty question)."""
        self.forget(request)
        if not _generates(answer):
            return None
        ticket = Ticket(next(self._numbers), answer)
        with self._lock:
            self._newest[_session(request)] = ticket.number
        return ticket

    def forget(self, request: gr.Request) -> None:
        """Stop the session's answer under way: a new conversation."""
        with self._lock:
            self._newest.pop(_session(request), None)

    def stream(self, history, ticket: Ticket | None, turns, request: gr.Request) -> Iterator[list[dict]]:
        """``write`` the ticket's answer while it is its session's newest."""
        session = _session(request)
        if ticket is None or self._newest.get(session) != ticket.number:
            yield gr.skip()
            return
        try:
            with contextlib.closing(write(self.endpoint, history, ticket.answer, turns)) as shown:
                for updated in shown:
                    if self._newest.get(session) != ticket.number:
                        # Gradio ends a run by sending its last output again: a skip, not this older chat.
                        yield gr.skip()
                        return
                    yield updated
        finally:
            with self._lock:  # checked and removed in one step: a newer question may be setting its own
                if self._newest.get(session) == ticket.number:
                    del self._newest[session]

    def wire(self, asked, inputs, concurrency: int) -> None:
        """After each of the ``asked`` events (the chat's reply), stream the answer into it.

        ``inputs`` are the chat, the State of the ticket and the State of the turns; the model's own queue
        (``concurrency`` at once) keeps searches from waiting on it.
        """
        for event in asked:
            event.then(
                self.stream,
                inputs=inputs,
                outputs=inputs[:1],
                concurrency_id="write",
                concurrency_limit=concurrency,
                api_visibility="private",
                # The page would skip an event whose earlier run it still counts as pending ("once"): the
                # answer to a question asked while the one before is being written must be written too.
                trigger_mode="multiple",
            )


def _session(request: gr.Request | None) -> str:
    return (getattr(request, "session_hash", None) or "") if request is not None else ""
