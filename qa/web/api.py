"""The JSON routes beside the chat page: ``POST /api/search`` with ``{"question", "k"}``, and ``POST /api/build``.

    curl -s localhost:7860/api/search -H 'Content-Type: application/json' \\
         -d '{"question": "Who traveled to Mexico City?", "k": 3}'

answers ``{"question": ..., "k": ..., "not_in_articles": false, "passages": [...]}``, each passage
with the fields of ``qa.Passage`` plus ``highlight`` (the answering sentence); ``not_in_articles``
is true when nothing in the articles answers the question (``Library.not_in_articles``, the
chat's rule too): the passages are then only the closest.
Optional fields ``source``, ``after``, ``before`` and ``article`` filter the search (see ``qa.filters``).

With a ``build_token``, ``POST /api/build`` also runs the builds that `qa build` hands to
the app (see qa.web.builds); requests without that token are refused.
"""

from __future__ import annotations

import threading
import typing
from collections.abc import AsyncIterator
from dataclasses import fields

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from .. import filters
from ..config import MAX_CHUNK_TOKENS, MAX_OVERLAP_SENTENCES
from ..errors import HandOffError, NoSuchArticleError, QAError, QuestionError, StoreError
from ..filters import Filter
from ..search import MAX_K, MAX_QUESTION_CHARS, Passage, answer_json, check_k, check_question
from . import builds, render
from .limits import MAX_BUILD_BYTES, MAX_SEARCH_BYTES, parse_json

# The schema of /api/search lists the index's sources up to this many (beyond, any text).
MAX_SCHEMA_SOURCES = 200
# An error answer is one line of at most this many characters.
MAX_ERROR_CHARS = 500
# A question must hold a character that is neither whitespace (str.split's) nor a control character
# (text.normalize drops those): else it is empty once check_question has cleaned it.
VISIBLE = "[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
# The bodies the routes read, for the OpenAPI schema (/api/openapi.json) that clients and the fuzz tests use.
SEARCH_BODY = {
    "type": "object",
    "properties": {
        "question": {
            "type": "string",
            "pattern": VISIBLE,
            "description": f"read up to {MAX_QUESTION_CHARS} characters",
        },
        "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 5},
        "source": {"description": "only articles of this source, or of any of these (as the articles name it)"},
        "after": {"description": "only articles dated this day or later: YYYY-MM-DD, YYYY-MM or YYYY"},
        "before": {"description": "only articles dated this day or earlier: YYYY-MM-DD, YYYY-MM or YYYY"},
        "article": {
            "description": "only the article with this id, or with these words in its title",
            "anyOf": [{"type": "null"}, {"type": "string"}],
        },
    },
    "required": ["question"],
}
BUILD_BODY = {
    "type": "object",
    "properties": {
        "paths": {"type": "array", "items": {"type": "string", "pattern": "^/"}, "minItems": 1},
        "full": {"type": "boolean"},
        "progress": {"type": "boolean"},
        "index_dir": {"type": "string", "pattern": "^/"},
        "model": {"type": "string"},
        "chunk_tokens": {"type": "integer", "minimum": 8, "maximum": MAX_CHUNK_TOKENS},
        "overlap_sentences": {"type": "integer", "minimum": 0, "maximum": MAX_OVERLAP_SENTENCES},
        "dense_index": {"type": "string", "maxLength": 200},
    },
    "required": ["paths", "index_dir", "model", "chunk_tokens", "overlap_sentences"],
}
# What /api/search answers besides 200: the request's fault, or the index's (damaged on disk, say).
SEARCH_REFUSALS = {
    400: "not a question, or a malformed filter or a source that no article has (the message says which)",
    404: "no article has the id or title words that the article filter names",
    500: "the search failed (the message says why)",
    503: "the index can't be read (the message says how to fix it)",
}
BUILD_REFUSALS = {
    401: "the build token was not given",
    409: "another index or model: `qa build` then builds by itself",
    422: "not a build request",
}


def search_body(sources: list[str]) -> dict:
    """The body /api/search reads, its filters as exactly as a schema can say them: the sources the index
    has (when they are few enough to list), dates as YYYY-MM-DD, YYYY-MM or YYYY, null or "" for none."""
    none = [{"type": "null"}, {"type": "string", "maxLength": 0}]
    source = {"type": "string", "enum": sources} if len(sources) <= MAX_SCHEMA_SOURCES else {"type": "string"}
    day = [
        {"type": "string", "format": "date"},
        {"type": "string", "pattern": "^([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])(-(0[1-9]|1[0-2]))?$"},
    ]
    props = dict(SEARCH_BODY["properties"])
    props["source"] = {**props["source"], "anyOf": [*none, source, {"type": "array", "items": source}]}
    props["after"] = {**props["after"], "anyOf": none + day}
    props["before"] = {**props["before"], "anyOf": none + day}
    return {**SEARCH_BODY, "properties": props}


def _json_type(kind: object) -> dict:
    """The JSON Schema of a Passage field's type (str, int | None, ...), read from the type, not its spelling."""
    names = {str: "string", int: "integer", float: "number", type(None): "null"}
    types = [names[t] for t in typing.get_args(kind) or (kind,)]
    return {"type": types[0] if len(types) == 1 else types}


# What /api/search answers: the question as searched, k, whether nothing in the articles answers it, and the
# passages (qa.Passage's fields and its highlight).
SEARCH_ANSWER = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "maxLength": MAX_QUESTION_CHARS},
        "k": {"type": "integer", "minimum": 1, "maximum": MAX_K},
        "not_in_articles": {"type": "boolean"},
        "passages": {
            "type": "array",
            "maxItems": MAX_K,
            "items": {
                "type": "object",
                "properties": {
                    **{name: _json_type(kind) for name, kind in typing.get_type_hints(Passage).items()},
                    "highlight": {"type": "string"},
                },
                "required": [f.name for f in fields(Passage)] + ["highlight"],
            },
        },
    },
    "required": ["question", "k", "not_in_articles", "passages"],
}


def _body(schema: dict, limit: int, refused: dict[int, str], answer: dict | None = None) -> dict:
    """OpenAPI for a route that reads a JSON body of ``schema`` (at most ``limit`` bytes), answers
    ``answer`` (a JSON Schema; None leaves FastAPI's) and refuses with ``refused``'s statuses."""
    error = {
        "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}
    }
    refused = {**refused, 413: f"the body is over {limit} bytes"}
    responses = {str(status): {"description": why, **error} for status, why in refused.items()}
    if answer:
        responses["200"] = {"content": {"application/json": {"schema": answer}}}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": responses,
    }


def router(library, concurrency: int = 4, build_token: str | None = None) -> APIRouter:
    """Routes that search ``library``; at most ``concurrency`` searches run at once, the rest wait.

    With ``build_token``, also the route that takes `qa build`'s builds (searches go on meanwhile).
    """
    gate = threading.BoundedSemaphore(concurrency)
    api = APIRouter()

    if build_token:

        @api.post("/api/build", openapi_extra=_body(BUILD_BODY, MAX_BUILD_BYTES, BUILD_REFUSALS))
        async def build(request: Request):
            if not builds.authorized(request.headers.get("authorization"), build_token):
                return _error(401, "This app's build token was not given (it is in the index folder's .server file).")
            try:
                handed = builds.build_request(library, parse_json(await request.body()))
            except HandOffError as e:
                return _error(409, str(e))
            except ValueError as e:  # not JSON, or not what qa build sends
                return _error(422, f"Not a build request: {e}")
            return _BuildStream(builds.BuildJob(library, handed), request)

    body = search_body(library.article_sources())

    @api.post("/api/search", openapi_extra=_body(body, MAX_SEARCH_BYTES, SEARCH_REFUSALS, SEARCH_ANSWER))
    async def search(request: Request):  # async only to read the body; the search runs in a thread
        try:
            body = parse_json(await request.body())
        except ValueError as e:
            return _error(
                400, f'The body must be JSON ({e}), e.g. {{"question": "Who traveled to Mexico City?", "k": 5}}.'
            )
        if not isinstance(body, dict):
            return _error(400, 'The body must be a JSON object with a "question" and an optional "k".')
        try:
            question, k = check_question(body.get("question")), check_k(body.get("k", 5))
            where = filters.check(*(body.get(name) for name in ("source", "after", "before", "article")))
            passages, refused = await run_in_threadpool(_search, library, gate, question, k, where)
        except NoSuchArticleError as e:
            return _error(404, str(e))
        except QuestionError as e:  # the question, or a filter: malformed, or a source the index lacks
            return _error(400, str(e))
        except StoreError as e:  # the index, not the request: the message says how to fix it
            return _error(503, str(e))
        except QAError as e:
            return _error(500, str(e))
        return answer_json(question, k, passages, refused)

    @api.get(render.ARTICLE_ROUTE, include_in_schema=False)  # the page's, not an API: it answers HTML
    def article_view(
        id: str, start: int, end: int, digest: str, hs: int | None = None, he: int | None = None,
        title: str = "", source: str = "", date: str = "", url: str = "",
    ):  # fmt: skip
        """The whole article under a passage card (``render.article_link`` names one), as escaped HTML."""
        if not (0 <= start <= end and (hs is None) == (he is None) and (hs is None or start <= hs <= he <= end)):
            return _article(400, render.note("This link to an article is malformed: open it from its passage."))
        try:
            with gate:
                text = library.store.article_text(id)
        except QAError as e:
            return _article(503, render.note(f"The article could not be read: {e}"))
        if render.text_digest(text[start:end]) != digest:  # gone, or changed by a rebuild since it was found
            return _article(404, render.GONE)
        p = Passage(
            text[start:end], 0.0, id, title, source, date, url, start, end, 0, highlight_start=hs, highlight_end=he
        )
        return _article(200, render.article_html(p, text))

    return api


def _article(status: int, fragment: str) -> HTMLResponse:
    """An article view or a note in its place (HTML whose text is all escaped), inert opened as a page."""
    headers = {"Content-Security-Policy": "default-src 'none'", "X-Content-Type-Options": "nosniff"}
    return HTMLResponse(fragment, status_code=status, headers={**headers, "Cache-Control": "no-store"})


class _BuildStream(StreamingResponse):
    """A handed-over build's answer, a JSON line at a time; the build stops if the client goes away."""

    def __init__(self, job: builds.BuildJob, request: Request) -> None:
        super().__init__(_lines(job, request), media_type="application/x-ndjson")
        self.job = job

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # however the response ended; harmless once the build is done
            self.job.cancel()


async def _lines(job: builds.BuildJob, request: Request) -> AsyncIterator[str]:
    # abandon_on_cancel: a client that goes away is noticed now, not when the wait for a line ends.
    while (line := await anyio.to_thread.run_sync(job.next_line, abandon_on_cancel=True)) is not None:
        if line:
            yield line
        elif await request.is_disconnected():
            return


def _search(
    library, gate: threading.BoundedSemaphore, question: str, k: int, where: Filter
) -> tuple[list[Passage], bool]:
    """The passages for ``question``, and whether nothing in the articles answers it."""
    with gate:
        passages = library.search(question, k=k, highlight=True, where=where)
        return passages, library.not_in_articles(question, passages)


def _error(status: int, message: str) -> JSONResponse:
    if len(message) > MAX_ERROR_CHARS:  # a message quoting what was sent must not send it back whole
        message = message[: MAX_ERROR_CHARS - 1] + "…"
    return JSONResponse({"error": message}, status_code=status)
