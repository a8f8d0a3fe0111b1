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

    def build(self, paths: list[str], settings: Settings, full: bool) -> BuildResult:
        """Have the app build ``paths`` into its index; waits as long as the build takes.

        HandOffError when the app can't or won't (unreachable, stopped meanwhile, other model or
        index, an older app without the route); QAError with the build's own message when the
        build itself fails (no articles, another build holds the lock).
        """
        body = {
            "paths": [str(Path(p).resolve()) for p in paths],
            "full": full,
            "index_dir": str(Path(settings.index_dir).resolve()),
            "model": settings.model,
            "chunk_tokens": settings.chunk_tokens,
            "overlap_sentences": settings.overlap_sentences,
        }
        conn = http.client.HTTPConnection(self.host, self.port, timeout=CONNECT_TIMEOUT)
        try:
            try:
                conn.connect()
            except OSError as e:
                raise HandOffError(f"no answer from {self.url} ({e})") from None
            conn.sock.settimeout(None)  # a build takes as long as it takes
            try:
                conn.request(
                    "POST",
                    "/api/build",
                    json.dumps(body),
                    {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
                )
                response = conn.getresponse()
                status, raw = response.status, response.read()
            except (OSError, http.client.HTTPException) as e:
                raise HandOffError(f"the app at {self.url} stopped answering ({e})") from None
        finally:
            conn.close()
        try:
            data = json.loads(raw)
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        message = str(data.get("error") or raw[:300].decode("utf-8", "replace"))
        if status == 200 and isinstance(data.get("report"), dict):
            return BuildResult(_report(data["report"]), [str(w) for w in data.get("warnings", [])])
        if status == 400:
            raise QAError(message)
        if status >= 500:
            raise QAError(
                f"the app at {self.url} failed to build ({status}: {message}). See its log, "
                "or build in this process with `qa build --no-app`."
            )
        raise HandOffError(message if status in (401, 409) else f"{self.url} answered {status}: {message}")


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


def build_request(library: Library, body: object) -> BuildRequest:
    """Check what ``qa build`` posted against the app's ``library``.

    ValueError when it isn't a build request; HandOffError when it names another index or
    model (``qa build`` then builds by itself).
    """
    from .library import _LazyEmbedder

    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    paths, full = body.get("paths"), body.get("full", False)
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and os.path.isabs(p) for p in paths):
        raise ValueError('"paths" must be a non-empty list of absolute paths')
    if not isinstance(full, bool):
        raise ValueError('"full" must be true or false')
    index_dir = Path(library.settings.index_dir).resolve()
    if str(body.get("index_dir")) != str(index_dir):
        raise HandOffError(f"this app serves {index_dir}, not {body.get('index_dir')}")
    wanted = _LazyEmbedder(str(body.get("model"))).name  # the name the built index records
    if wanted != library.embedder.name:
        raise HandOffError(f"this app has model {library.embedder.name!r} loaded, not {wanted!r}")
    settings = library.settings.with_(
        chunk_tokens=_whole(body, "chunk_tokens"), overlap_sentences=_whole(body, "overlap_sentences")
    )
    return BuildRequest(paths, settings, full)


def build_here(library: Library, request: BuildRequest) -> str:
    """Run ``request`` in the app, with its loaded model, as ``qa build`` would have run it.

    Returns the JSON answer, ``{"report": ..., "warnings": [...]}``, as ASCII text (a skipped
    file's name that isn't UTF-8 must not fail the answer). QAError with the build's own message
    when the build fails (no articles, another build holds the lock).
    """
    from . import indexer

    with _warnings_of_this_thread() as warnings:
        collection = indexer.collect(request.paths, request.settings.index_dir)
        report = indexer.build(collection, request.settings, library.embedder, full=request.full)
    library.last_build = report
    return json.dumps({"report": asdict(report), "warnings": warnings})


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
