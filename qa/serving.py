"""Hand `qa build` to the app serving the index, which has the model loaded already.

A running ``python app.py`` leaves ``.server`` in its index folder (readable by its user
only): pid, address and a random token. ``qa build`` finds it there and posts the build
to the app's ``POST /api/build`` route instead of importing torch and loading the model
itself (about 5 s, most of a one-article rebuild). Anything amiss (no app, a stale file,
another model, an older app) and ``qa build`` builds in its own process as before.

    >>> server = find("index/")                                          # doctest: +SKIP
    >>> result = server.build(["seeds/"], Settings(), full=False)       # doctest: +SKIP
    >>> result.report.summary()                                          # doctest: +SKIP
    'Articles: 0 added, 1 changed, ...'

Only the standard library here: the client side must start in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import hmac
import http.client
import json
import logging
import os
import queue
import secrets
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Settings
from .errors import HandOffError, QAError

if TYPE_CHECKING:
    from .embedding import Progress
    from .library import Library

log = logging.getLogger(__name__)

SERVER_FILE = ".server"
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class BuildResult:
    """A build the app ran: its report and the warnings it logged meanwhile."""

    report: object  # indexer.BuildReport; not imported here, that would pull in numpy and faiss
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Server:
    """A running app as its ``.server`` file describes it."""

    pid: int
    host: str
    port: int
    token: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def build(self, paths: list[str], settings: Settings, full: bool, progress: bool = False) -> BuildResult:
        """Have the app build ``paths`` into its index; waits as long as the build takes.

        With ``progress``, a bar on stderr follows the app's embedding. HandOffError when the app
        can't or won't (unreachable, stopped meanwhile, other model or index, an older app
        without the route); QAError with the build's own message when the build itself fails
        (no articles, another build holds the lock).
        """
        body = {
            "paths": [str(Path(p).resolve()) for p in paths],
            "full": full,
            "index_dir": str(Path(settings.index_dir).resolve()),
            "model": settings.model,
            "chunk_tokens": settings.chunk_tokens,
            "overlap_sentences": settings.overlap_sentences,
            "progress": progress,
        }
        conn = http.client.HTTPConnection(self.host, self.port, timeout=CONNECT_TIMEOUT)
        try:  # closing the connection early (Ctrl+C) makes the app stop the build
            response = self._post(conn, body)
            if response.status != 200:
                raise self._refusal(response.status, response.read())
            return self._follow(response, progress)
        finally:
            conn.close()

    def _post(self, conn: http.client.HTTPConnection, body: dict) -> http.client.HTTPResponse:
        try:
            conn.connect()
        except OSError as e:
            raise HandOffError(f"no answer from {self.url} ({e})") from None
        conn.sock.settimeout(None)  # a build takes as long as it takes
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        try:
            conn.request("POST", "/api/build", json.dumps(body), headers)
            return conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            raise HandOffError(f"the app at {self.url} stopped answering ({e})") from None

    def _follow(self, response: http.client.HTTPResponse, progress: bool) -> BuildResult:
        """Read the app's answer, a JSON object a line: progress, then the report or an error."""
        bar = _Bar(progress)
        try:
            for line in response:
                event = json.loads(line)
                if "report" in event:
                    return BuildResult(_report(event["report"]), [str(w) for w in event.get("warnings", [])])
                if "error" in event:
                    raise self._refusal(int(event.get("status", 500)), str(event["error"]))
                if "progress" in event:
                    bar.show(*event["progress"])
        except (OSError, http.client.HTTPException) as e:  # the app is gone, and its build with it
            raise HandOffError(f"the app at {self.url} stopped answering ({e})") from None
        except (ValueError, TypeError, KeyError) as e:  # not for a fall-back: the app's build may go on
            raise QAError(
                f"the app at {self.url} sent what this qa can't read ({e}). Update both, or build in "
                "this process with `qa build --no-app`."
            ) from None
        finally:
            bar.close()
        raise HandOffError(f"the app at {self.url} stopped answering before the build was done")

    def _refusal(self, status: int, answer: bytes | str) -> QAError:
        """The error for an answer other than a report: QAError when the build failed,
        HandOffError when the app didn't take it (``qa build`` then builds by itself)."""
        message = answer if isinstance(answer, str) else _error_of(answer)
        if status == 400:
            return QAError(message)
        if status >= 500:
            return QAError(
                f"the app at {self.url} failed to build ({status}: {message}). See its log, "
                "or build in this process with `qa build --no-app`."
            )
        return HandOffError(message if status in (401, 409) else f"{self.url} answered {status}: {message}")


class _Bar:
    """The progress bar a build in this process would draw (over 256 passages), fed by the app."""

    def __init__(self, wanted: bool) -> None:
        self._wanted, self._bar = wanted, None

    def show(self, done: int, total: int) -> None:
        if self._bar is None and self._wanted and total > 256:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc="Embedding", unit="passage")
        if self._bar is not None:
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _error_of(raw: bytes) -> str:
    """The ``error`` of a JSON answer, else its first 300 bytes."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return raw[:300].decode("utf-8", "replace")


def find(index_dir: str | os.PathLike) -> Server | None:
    """The app serving ``index_dir`` as its ``.server`` file says, or None (no file, a garbled one,
    one left by a process that is gone, or one that isn't this user's alone)."""
    path = Path(index_dir) / SERVER_FILE
    try:
        st = path.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None  # not written by an app of this user's: its address and token can't be trusted
        data = json.loads(path.read_text("utf-8"))
        server = Server(int(data["pid"]), str(data["host"]), int(data["port"]), str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(server.pid):
        return None
    return server


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
    from .embedding import model_name

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
        raise HandOffError(f"this app serves {index_dir}, not {body.get('index_dir')}")
    wanted = model_name(str(body.get("model")))  # the name the built index records
    served = library.embedder.name
    if wanted != served:
        raise HandOffError(f"this app has model {served!r} loaded, not {wanted!r}")
    settings = library.settings.with_(
        chunk_tokens=_whole(body, "chunk_tokens"), overlap_sentences=_whole(body, "overlap_sentences")
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
    from . import indexer

    with _warnings_of_this_thread() as warnings:
        collection = indexer.collect(request.paths, request.settings.index_dir)
        report = library.update(collection, request.settings, full=request.full, progress=progress)
    return {"report": asdict(report), "warnings": warnings}


def _whole(body: dict, key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'"{key}" must be a whole number, got {value!r}')
    return value


@contextlib.contextmanager
def _warnings_of_this_thread() -> Iterator[list[str]]:
    """Collect what this thread logs at WARNING and above (searches log from other threads).

    Not qa.articles' "skipped ..." lines: the report's skipped list carries them.
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


def _report(data: dict):
    """The BuildReport the app sent; fields this version doesn't know (a newer app) are left out."""
    from .articles import Skipped
    from .indexer import BuildReport

    known = ({f.name for f in fields(BuildReport)} - {"skipped"}) & data.keys()
    skipped = [Skipped(str(s.get("path")), str(s.get("reason"))) for s in data.get("skipped", [])]
    return BuildReport(**{k: data[k] for k in known}, skipped=skipped)


def _reachable(host: str) -> str:
    """The address a local client reaches an app on that listens on ``host``."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True
