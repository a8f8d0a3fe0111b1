"""The app's side of the `qa build` hand-off: announce the app in ``.server``, check a handed-over build, run it.

``qa.handoff`` is the command's side. The app writes ``index_dir/.server`` (``announce``) with
a random token (``new_token``); ``qa.web.api`` takes the build at ``POST /api/build`` once the
token is right (``authorized``), checks it (``build_request``) and runs it on a thread of its
own (``BuildJob``) with the model it has loaded (``Library.update``), streaming its progress.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import queue
import secrets
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import backends
from ..config import Settings
from ..embedding import model_name
from ..errors import HandOffError, QAError, quoted
from ..handoff import SERVER_FILE

if TYPE_CHECKING:
    from ..embedding import Progress
    from ..library import Library

log = logging.getLogger(__name__)


def new_token() -> str:
    """A random build token for an app (256 bits)."""
    return secrets.token_urlsafe(32)


@contextlib.contextmanager
def announce(index_dir: str | os.PathLike, host: str, port: int, token: str) -> Iterator[bool]:
    """Write ``index_dir/.server`` for the block's duration; yields whether it could be written.

    The file is readable by this user only. On exit it is removed unless another app has
    since written its own.
    """
    if port == 0:  # "any free port": which one is known only once bound, so say nothing
        yield False
        return
    path = Path(index_dir) / SERVER_FILE
    record = {"pid": os.getpid(), "host": _reachable(host), "port": port, "token": token}
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{SERVER_FILE}.", dir=index_dir)  # 0600, a name nobody chose
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("`qa build` will load the model itself: can't write %s (%s)", path, e)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text("utf-8")).get("token") == token:
                path.unlink()


def authorized(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (compared in constant time)."""
    return hmac.compare_digest((header or "").encode(), f"Bearer {token}".encode())


@dataclass(frozen=True)
class BuildRequest:
    """A build that ``qa build`` handed over, checked."""

    paths: list[str]
    settings: Settings
    full: bool
    progress: bool = False  # send the embedding's progress to the command


def build_request(library: Library, body: object) -> BuildRequest:
    """Check what ``qa build`` posted against the app's ``library``.

    ValueError when it isn't a build request; HandOffError when it names another index or
    model (``qa build`` then builds by itself).
    """
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    paths, full = body.get("paths"), body.get("full", False)
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and os.path.isabs(p) for p in paths):
        raise ValueError('"paths" must be a non-empty list of absolute paths')
    progress = body.get("progress", False)
    if not isinstance(full, bool) or not isinstance(progress, bool):
        raise ValueError('"full" and "progress" must be true or false')
    index_dir = Path(library.settings.index_dir).resolve()
    if str(body.get("index_dir")) != str(index_dir):
        raise HandOffError(f"this app serves {index_dir}, not {quoted(body.get('index_dir'))}")
    serving = backends.identity(library.settings)
    if body.get("backend", serving) != serving:  # a `qa build` older than backends sends none
        raise HandOffError(f"this app serves the {serving} index, not {quoted(body.get('backend'))}")
    wanted = model_name(str(body.get("model")))  # the name the built index records
    served = library.embedder.name
    if wanted != served:
        raise HandOffError(f"this app has model {served!r} loaded, not {quoted(wanted)}")
    dense_index = body.get("dense_index", library.settings.dense_index)  # a `qa build` older than the setting
    if not isinstance(dense_index, str):
        raise ValueError(f'"dense_index" must be text, got {quoted(dense_index)}')
    settings = library.settings.with_(
        chunk_tokens=_whole(body, "chunk_tokens"),
        overlap_sentences=_whole(body, "overlap_sentences"),
        dense_index=dense_index,
    )
    return BuildRequest(paths, settings, full, progress)


class CommandGoneError(Exception):
    """The `qa build` that handed over a build went away: the build stops."""


class BuildJob:
    """A handed-over build on a thread of its own; ``next_line`` gives its answer a JSON line at a time:
    ``{"progress": [done, total]}`` (if asked for), then ``{"report": ..., "warnings": [...]}`` or
    ``{"error", "status"}``.

    ``cancel()`` (the command went away) stops the build at its next progress step (every 256
    passages; with a model that doesn't mean-pool, only once all are embedded), before anything
    is written: the index stays as it was. A build already writing finishes.
    """

    def __init__(self, library: Library, request: BuildRequest) -> None:
        self._events: queue.Queue[dict | None] = queue.Queue()
        self._cancelled = threading.Event()
        self._request = request
        threading.Thread(target=self._run, args=(library,), name="qa-build", daemon=True).start()

    def cancel(self) -> None:
        self._cancelled.set()

    def next_line(self, wait: float = 1.0) -> str | None:
        """The next line to send; "" when none came within ``wait`` seconds; None when all is said."""
        try:
            event = self._events.get(timeout=wait)
        except queue.Empty:
            return ""
        # ASCII: a skipped file's name that isn't UTF-8 must not fail the answer.
        return None if event is None else json.dumps(event) + "\n"

    def _run(self, library: Library) -> None:
        try:
            self._events.put(build_here(library, self._request, progress=self._progress))
        except CommandGoneError:
            log.warning("stopped a build: the `qa build` that asked for it went away")
        except QAError as e:
            self._events.put({"error": str(e), "status": 400})
        except Exception as e:  # a bug: tell the command, and the app's log
            log.exception("a build handed over by `qa build` failed")
            self._events.put({"error": f"{type(e).__name__}: {e}", "status": 500})
        finally:
            self._events.put(None)

    def _progress(self, done: int, total: int) -> None:
        """Called by the embedding as it goes: on to the command, or stop if it went away."""
        if self._cancelled.is_set():
            raise CommandGoneError()
        if self._request.progress:
            self._events.put({"progress": [done, total]})


def build_here(library: Library, request: BuildRequest, progress: Progress = False) -> dict:
    """Run ``request`` in the app, with its loaded model, as ``qa build`` would have run it.

    Returns ``{"report": ..., "warnings": [...]}`` (the report as a dict). QAError with the
    build's own message when the build fails (no articles, another build holds the lock).
    """
    with _warnings_of_this_thread() as warnings:
        report = library.update(request.paths, request.settings, full=request.full, progress=progress)
    return {"report": asdict(report), "warnings": warnings}


def _whole(body: dict, key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'"{key}" must be a whole number, got {quoted(value)}')
    return value


@contextlib.contextmanager
def _warnings_of_this_thread() -> Iterator[list[str]]:
    """Collect what this thread logs at WARNING and above (searches log from other threads).

    Not qa.articles' lines: the report's skipped and notices lists carry them.
    """
    caught: list[str] = []
    me = threading.get_ident()

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == me and record.name != "qa.articles":
                caught.append(record.getMessage())

    handler = Catch(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield caught
    finally:
        root.removeHandler(handler)


def _reachable(host: str) -> str:
    """The address a local client reaches an app on that listens on ``host``."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
