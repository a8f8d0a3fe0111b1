"""The chat web UI: `python app.py` serves the index in index/ at http://127.0.0.1:7860 (options and start-up only).

With no index yet, it first builds one from seeds/. Options: --host, --port, --index,
--collection, --concurrency (or QA_HOST, QA_PORT, QA_INDEX_DIR, QA_COLLECTION, QA_CONCURRENCY).
Programs can use the same search through the Gradio API (endpoints /chat and /search) or the
JSON route POST /api/search. Its "Add articles" panel saves uploads and pasted text into the
collection folder and indexes them. While it runs, `qa build` of its index hands the build to it
(the model is loaded already). The web wing, qa.web, does all of that: qa.web.server serves it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from qa import Library, QAError, Settings, backends
from qa.cli import backend_options
from qa.errors import NoIndexError
from qa.web.adding import collection_folder  # importing qa.web sets the offline environment (config.offline)

# Searches are CPU-bound: a few at once keep every core busy; more would only thrash.
DEFAULT_CONCURRENCY = 4
SEEDS = Path(__file__).resolve().parent / "seeds"  # the sample articles an app with no index starts with


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description="Serve the chat web UI for the articles in an index.")
    parser.add_argument(
        "--host",
        default=env.get("QA_HOST") or "127.0.0.1",
        help="address to listen on (default: $QA_HOST or 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=env.get("QA_PORT") or "7860",  # a string: argparse converts it and names a bad value
        help="port to listen on (default: $QA_PORT or 7860)",
    )
    parser.add_argument(
        "--index",
        help="index directory (default: $QA_INDEX_DIR or index/); built from seeds/ first if it holds no index",
    )
    parser.add_argument(
        "--collection",
        default=env.get("QA_COLLECTION") or None,
        help="folder where articles added in the app are saved (default: $QA_COLLECTION, else seeds/ when the "
        "index was built from it, else the first folder it was built from); it joins the index's folders",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=env.get("QA_CONCURRENCY") or str(DEFAULT_CONCURRENCY),
        help=f"searches that run at once; others queue (default: {DEFAULT_CONCURRENCY})",
    )
    backend_options(parser)
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error(f"--concurrency must be 1 or more, got {args.concurrency}")
    return args


def open_library(settings: Settings) -> Library:
    """The index at settings.index_dir, built from seeds/ first when there is none."""
    try:
        return Library.open(settings=settings)
    except NoIndexError:
        where = backends.of(settings).where
        print(f"No index in {where} yet: building one from {SEEDS} ...", file=sys.stderr, flush=True)
        lib = Library.build([SEEDS], settings=settings, progress=True)
        print(lib.last_build.summary(), file=sys.stderr, flush=True)
        return lib


def main(argv: list[str] | None = None) -> int:
    began = time.perf_counter()
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        settings = Settings.from_env(index_dir=args.index, backend=args.backend, milvus_uri=args.milvus_uri)
        library = open_library(settings)
        library.search("Who traveled to Mexico City?", k=1, highlight=True)  # so the first user isn't the one who waits
    except (QAError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from qa.web import server  # gradio and uvicorn: seconds to import, so once the library is open

    folder = collection_folder(library, args.collection, preferred=SEEDS)  # seeds/ first, if the index has it
    collection = str(folder) if folder is not None else None
    return server.serve(library, args.host, args.port, args.concurrency, collection, began=began)


if __name__ == "__main__":
    sys.exit(main())
