"""Bounded requests: every route's body has a size limit, and JSON bodies are parsed within it.

    >>> limit_for("/api/search")
    65536

A body over its route's limit gets ``413`` and ``{"error": ...}`` before it is read whole, so a
100 MB question costs the app 64 KB, not gigabytes. File uploads have their own, larger limit
(Gradio's ``max_file_size``, see qa.web.server).
"""

from __future__ import annotations

import json

# /api/search: a question (qa reads 2,000 characters of it, search.MAX_QUESTION_CHARS) and k.
MAX_SEARCH_BYTES = 64 * 2**10
# /api/build: the paths `qa build` names (a shell glob of thousands of files is fine).
MAX_BUILD_BYTES = 4 * 2**20
# The page's own calls: a question, the chat so far, a pasted article (qa.web.adding.MAX_PASTE_CHARS).
MAX_PAGE_BYTES = 2 * 2**20
UPLOAD_PATH = "/gradio_api/upload"


def limit_for(path: str) -> int | None:
    """The most bytes a request body to ``path`` may hold; None for uploads (Gradio limits those)."""
    if path.rstrip("/").endswith(UPLOAD_PATH):
        return None
    return {"/api/search": MAX_SEARCH_BYTES, "/api/build": MAX_BUILD_BYTES}.get(path.rstrip("/"), MAX_PAGE_BYTES)


def parse_json(body: bytes) -> object:
    """A JSON body as Python values; ValueError (saying why) when it isn't JSON or nests too deeply.

    >>> parse_json(b'{"k": 1}')
    {'k': 1}
    """
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("the JSON nests too deeply") from None
    except ValueError as e:  # also UnicodeDecodeError: bytes that aren't UTF-8
        raise ValueError(f"not JSON ({str(e).splitlines()[0][:120]})") from None


class BodyLimit:
    """ASGI middleware: a request whose body is over ``limit_for(path)`` gets 413 with a JSON error.

    A declared Content-Length over the limit is refused before anything is read; otherwise the
    body is read (counting, never more than the limit) before the app sees it, then handed on.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        limit = limit_for(scope.get("path", "")) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit)
            return
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            size += len(message.get("body", b""))
            if size > limit:
                await _refuse(send, limit)
                return
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = {"type": "http.request", "body": b"".join(parts), "more_body": False}

        async def replay():
            nonlocal body
            if body is None:
                return await receive()  # after the body: the disconnect a streaming answer waits for
            message, body = body, None
            return message

        await self.app(scope, replay, send)


async def _refuse(send, limit: int) -> None:
    body = json.dumps({"error": f"The request is over {_size(limit)}, the most this route takes."}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _size(n: int) -> str:
    return f"{n // 2**20} MB" if n >= 2**20 else f"{n // 2**10} KB"
