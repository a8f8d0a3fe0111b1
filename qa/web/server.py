"""Serve a Library: the Gradio page and the JSON and build routes in one FastAPI app, announced to `qa build`.

    >>> serve(Library.open("index/"), "127.0.0.1", 7860)   # doctest: +SKIP

runs until Ctrl+C or SIGTERM (app.py parses the options and opens the library).
"""

from __future__ import annotations

import signal
import sys
import time

import gradio as gr
import uvicorn
from fastapi import FastAPI

from . import builds
from .adding import MAX_JSONL_UPLOAD_BYTES
from .api import router
from .limits import BodyLimit
from .render import CSS, HEAD
from .ui import build_ui


def app(library, concurrency: int = 4, collection: str | None = None, build_token: str | None = None) -> BodyLimit:
    """The app: the JSON routes (and, with ``build_token``, the build route), their OpenAPI schema at
    /api/openapi.json and the Gradio page at /, every request body bounded (qa.web.limits)."""
    demo = build_ui(library, concurrency, collection).queue(default_concurrency_limit=concurrency)
    api = FastAPI(title="qa", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    api.include_router(router(library, concurrency, build_token=build_token))
    # Gradio refuses bigger uploads before they reach the panel; smaller ones get qa's own limits and messages.
    api = gr.mount_gradio_app(
        api, demo, path="/", css=CSS, head=HEAD, footer_links=["api"], max_file_size=MAX_JSONL_UPLOAD_BYTES
    )
    # Gradio refuses input files that were not uploaded to it only once the Blocks count as launched,
    # which mount_gradio_app never marks: without this, a client could name any server file as an
    # upload (or a chat message's file) and have it copied into Gradio's cache and into the collection.
    demo.has_launched = True
    return BodyLimit(api)


def serve(
    library,
    host: str,
    port: int,
    concurrency: int = 4,
    collection: str | None = None,
    began: float | None = None,
) -> int:
    """Serve ``library`` at http://host:port until stopped; returns the exit status (130 after Ctrl+C).

    ``collection`` is the folder where added articles go (``qa.web.adding.collection_folder``);
    ``began`` the ``time.perf_counter()`` of the start, for the "ready in" line.
    """
    token = builds.new_token()  # `qa build` reads it from the index folder and hands its builds to this app
    served = app(library, concurrency, collection, build_token=token)
    index_dir = library.settings.index_dir
    url = f"http://{host}:{port}"
    ready = f"; ready in {time.perf_counter() - began:.1f} s" if began is not None else ""
    print(
        f"Serving {index_dir}/ at {url}  (JSON: POST {url}/api/search{ready}; Ctrl+C to stop)",
        file=sys.stderr,
        flush=True,
    )
    # uvicorn stops gracefully on SIGINT and SIGTERM, then raises the signal again: as exceptions
    # (not the default SIGTERM handler's sudden death) they let the .server file be removed.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        with builds.announce(index_dir, host, port, token):
            uvicorn.run(served, host=host, port=port, log_level="warning")
    except KeyboardInterrupt:
        return 130
    return 0


def _terminated(signum, frame):
    raise SystemExit(128 + signum)
