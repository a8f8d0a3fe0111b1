"""The embedders: the caching wrapper, and the one interface (``Embedding``) every embedder satisfies."""

import numpy as np
import pytest

from qa.embedding import CachedEmbedder, Embedding, LazyEmbedder

from conftest import FakeEmbedder


def test_cached_embedder_embeds_each_text_once_and_round_trips(tmp_path, fake_embedder):
    calls = []

    class Counting(FakeEmbedder):  # the whole Embedding protocol (review 23), counting what reaches encode
        def encode(self, texts, progress=None):
            calls.append(list(texts))
            return fake_embedder.encode(texts)

    cached = CachedEmbedder(Counting())
    first = cached.encode(["a b", "c", "a b"])
    assert calls == [["a b", "c"]]
    assert np.allclose(cached.encode(["c"]), fake_embedder.encode(["c"])) and len(calls) == 1
    cached.save(tmp_path / "cache")
    again = CachedEmbedder(Counting()).load(tmp_path / "cache")
    assert np.allclose(again.encode(["a b", "c", "a b"]), first) and len(calls) == 1


@pytest.mark.parametrize("kind", ["real", "lazy", "cached", "fake"])
def test_every_embedder_satisfies_the_embedding_protocol(kind, real_embedder):
    made = {
        "real": lambda: real_embedder,
        "lazy": lambda: LazyEmbedder(real_embedder.name),  # the session's model: looking at it loads nothing new
        "cached": lambda: CachedEmbedder(FakeEmbedder()),
        "fake": FakeEmbedder,
    }[kind]()
    assert isinstance(made, Embedding)
