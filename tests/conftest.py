"""Shared fixtures: environment isolation, a fake and a real embedder, a tiny corpus, a seed index."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


class FakeEmbedder:
    """Deterministic bag-of-words hashing embedder: fast, no model, same interface as Embedder."""

    name = "fake-bow"
    dim = 64
    max_tokens = 254

    def token_spans(self, texts):
        return [[m.span() for m in re.finditer(r"\w+|[^\w\s]", t)] for t in texts]

    def encode(self, texts, progress=None):
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
    from qa.library import _load_embedder

    return _load_embedder("sentence-transformers/all-MiniLM-L6-v2")


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
