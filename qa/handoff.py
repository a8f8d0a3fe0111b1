"""The `qa build` side of the hand-off: find the app serving the index and have it run the build.

A running ``python app.py`` leaves ``.server`` in its index folder (readable by its user
only): pid, address and a random token (``qa.web.builds`` writes it and runs the builds).
``qa build`` finds it there and posts the build to the app's ``POST /api/build`` route
instead of importing torch and loading the model itself (about 5 s, most of a one-article
rebuild). Anything amiss (no app, a stale file, another model, an older app) and
``qa build`` builds in its own process as before.

    >>> server = find("index/")                                          # doctest: +SKIP
    >>> result = server.build(["seeds/"], Settings(), full=False)       # doctest: +SKIP
    >>> result.report.summary()                                          # doctest: +SKIP
    'Articles: 0 added, 1 changed, ...'

Only the standard library (and qa's own config and errors) here: `qa build` must start in a
fraction of a second.
"""

from __future__ import annotations

import http.client
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from . import backends
from .config import Settings
from .errors import HandOffError, QAError

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
            "backend": backends.identity(settings),  # the app builds only into the index it serves
            "model": settings.model,
            "chunk_tokens": settings.chunk_tokens,
            "overlap_sentences": settings.overlap_sentences,
            "dense_index": settings.dense_index,
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
            if total != self._bar.total:  # the app's estimate, refined after each of its batches
                self._bar.total = total
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


def _report(data: dict):
    """The BuildReport the app sent; fields this version doesn't know (a newer app) are left out."""
    from .articles import Skipped
    from .indexer import BuildReport

    known = ({f.name for f in fields(BuildReport)} - {"skipped", "notices"}) & data.keys()
    skipped = [Skipped(str(s.get("path")), str(s.get("reason"))) for s in data.get("skipped", [])]
    notices = [str(n) for n in data.get("notices", [])]  # an older app sends none
    return BuildReport(**{k: data[k] for k in known}, skipped=skipped, notices=notices)


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
