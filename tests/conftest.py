"""Shared fixtures: environment isolation, a fake and a real embedder, a tiny corpus, a seed index."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from qa.config import offline

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
FIXTURES = ROOT / "tests" / "fixtures"  # slices of the public data sets: see tests/fixtures/README.md
WIKINEWS = FIXTURES / "wikinews" / "articles.jsonl"

os.environ["HF_HUB_OFFLINE"] = "1"  # forced: the suite never downloads, whatever the shell allows
offline()  # the app's other defaults (no telemetry, no analytics), here and in the apps the tests start


class FakeEmbedder:
    """Deterministic bag-of-words hashing embedder: fast, no model, same interface as Embedder."""

    name = "fake-bow"
    dim = 64
    max_tokens = 254

    def token_spans(self, texts):
        return [[m.span() for m in re.finditer(r"\w+|[^\w\s]", t)] for t in texts]

    def encode(self, texts, progress=None):
        return self._bow(texts)

    def encode_passages(self, texts, spans, progress=None):
        """As Embedder.encode_passages, but each sentence is encoded on its own."""
        return self.encode(texts), [self._bow([t[s:e] for s, e in sp]) for t, sp in zip(texts, spans)]

    def _bow(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("QA_"):
            monkeypatch.delenv(key)


@pytest.fixture
def fake_embedder():
    return FakeEmbedder()


@pytest.fixture(scope="session")
def real_embedder():
    from qa.embedding import load_embedder

    return load_embedder("sentence-transformers/all-MiniLM-L6-v2")


TINY = {
    "apple.md": "---\ntitle: Apple opens a store in Paris\nsource: Wire\ndate: 2008-01-02\n---\n"
    "Apple opened its first store in Paris on Saturday. Thousands queued on the Rue de Rivoli.\n",
    "boeing.txt": "Boeing delayed the 787 Dreamliner again. The first delivery moves to 2009.\n",
    "gm.md": "# GM cuts jobs\nGeneral Motors will cut 5,000 jobs at plants in Michigan. The union objected.\n",
}


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    """A folder with three short articles whose answers are known."""
    folder = tmp_path / "articles"
    folder.mkdir()
    for name, text in TINY.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def seed_library(tmp_path_factory, real_embedder):
    """The seed article indexed with the real model, once per test session."""
    from qa import Library

    return Library.build([SEEDS], index_dir=tmp_path_factory.mktemp("seed") / "index", embedder=real_embedder)


@pytest.fixture(scope="session")
def wikinews_library(tmp_path_factory, real_embedder):
    """The seed article and the 55 Wikinews articles of the fixture, indexed with the real model, once per session."""
    from qa import Library

    return Library.build(
        [SEEDS, WIKINEWS], index_dir=tmp_path_factory.mktemp("wikinews") / "index", embedder=real_embedder
    )


def wikinews_records(n: int) -> list[str]:
    """``n`` JSON lines of Wikinews articles: the fixture's records, then copies of them once those run out.

    Each copy has its own id and a first sentence naming it, so the reader keeps it (it drops repeated ids and texts).
    """
    lines = WIKINEWS.read_text("utf-8").splitlines()
    records = []
    for i in range(n):
        record, copy = json.loads(lines[i % len(lines)]), i // len(lines)
        if copy:
            record["id"] = f"{record['id']}-copy{copy}"
            record["text"] = f"Copy {copy} of this article. {record['text']}" if record["text"] else ""
        records.append(json.dumps(record))
    return records


def shows_k(passages, k: int) -> bool:
    """Whether a search of the seed index showed ``k`` passages as merging allows: the seed is one article
    whose five chunks overlap in a chain, so the first ``k`` merge (qa.search.merge_overlaps) and the rest
    touch them: ``k`` passages, or fewer that never overlap."""
    spans = sorted((p["start"], p["end"]) if isinstance(p, dict) else (p.start, p.end) for p in passages)
    apart = all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    return len(spans) == k or (0 < len(spans) < k and apart)


# --- The app as a real server (tests/test_app.py, tests/test_browser.py) ---

RESULTS: list[str] = []  # lines that tests want in the terminal summary, e.g. the multi-turn share


def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        terminalreporter.section("qa results")
        for line in RESULTS:
            terminalreporter.write_line(line)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def start_app(tmp_path_factory):
    """A factory: ``with start_app(index_dir) as url:`` runs `python app.py` on a free port until the block ends.

    ``args`` are more options for app.py, e.g. ``["--collection", str(folder)]``; ``env`` more
    environment variables, e.g. ``{"QA_MAX_ADD_SECONDS": "1"}``.
    """
    import contextlib
    import subprocess
    import sys
    import time
    import urllib.request

    @contextlib.contextmanager
    def start(index_dir: Path, timeout: float = 180.0, args: Sequence[str] = (), env: dict | None = None):
        port = free_port()
        log = tmp_path_factory.mktemp("app") / "app.log"
        extra, env = env or {}, {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
        env.update(extra)  # offline as this process is: app.py inherits the environment set above
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "app.py", "--port", str(port), "--index", str(index_dir), *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(url + "/", timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"app.py did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    return start


@pytest.fixture(scope="module")
def app_url(start_app, seed_library):
    """`python app.py` serving the seed index, one per test module (a module may define its own app_url)."""
    with start_app(seed_library.settings.index_dir) as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url):
    """A gradio_client Client of the module's app."""
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture(scope="session")
def qa_results() -> list[str]:
    """Append a line here to have it printed in the "qa results" section at the end of the run."""
    return RESULTS


def edit_manifest(index: Path, change) -> dict:
    """Change the live generation's manifest in place (as an index written by an older qa would hold it)."""
    import sqlite3

    data, gen = (index / "CURRENT").read_text().strip().split("/")
    with sqlite3.connect(index / data / "meta.sqlite") as db:
        (text,) = db.execute("SELECT manifest FROM generations WHERE gen = ?", (int(gen[4:]),)).fetchone()
        manifest = json.loads(text)
        change(manifest)
        db.execute("UPDATE generations SET manifest = ? WHERE gen = ?", (json.dumps(manifest), int(gen[4:])))
    return manifest
