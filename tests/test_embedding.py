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
    assert isinstance(made, Embedding)  # the names are there; what they return is checked below
    assert isinstance(made.name, str) and made.name and isinstance(made.dim, int) and made.max_tokens > 0

    texts = ["Blinken went to Mexico City. He spoke of a cycle of crime.", "Boeing delayed the 787."]
    spans = [[(0, 28), (29, 58)], [(0, 23)]]  # the sentences of each text
    vectors = made.encode(texts)
    assert vectors.shape == (2, made.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)

    passages, sentences = made.encode_passages(texts, spans)
    assert passages.shape == (2, made.dim) and passages.dtype == np.float32
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-4)
    assert len(sentences) == len(texts)
    for each, sp in zip(sentences, spans, strict=True):  # None is allowed, but all of these have sentence vectors
        assert each.shape == (len(sp), made.dim) and each.dtype == np.float32
        assert np.allclose(np.linalg.norm(each, axis=1), 1.0, atol=1e-4)

    token_spans = made.token_spans(texts)
    assert len(token_spans) == len(texts)
    for text, tokens in zip(texts, token_spans, strict=True):
        assert tokens and all(0 <= start < end <= len(text) for start, end in tokens)


class Venomous(FakeEmbedder):
    """Refuses any batch holding VENOM, so a build falls back to embedding article by article."""

    def encode_passages(self, texts, spans, progress=None):
        if any("VENOM" in t for t in texts):
            raise RuntimeError("the model choked")
        return super().encode_passages(texts, spans, progress)


def test_the_article_by_article_fallback_reports_progress_and_can_be_stopped(tiny_corpus, tmp_path):
    """Review finding 18: the fallback ran without progress, so the panel froze and a stop was not heard."""
    from qa import Library

    (tiny_corpus / "venom.txt").write_text("A VENOM drop in the text.\n")
    seen = []
    lib = Library.build([tiny_corpus], index_dir=tmp_path / "index", embedder=Venomous(), progress=_calls(seen))
    assert len(lib.last_build.skipped) == 1 and seen and seen[-1][0] == seen[-1][1] > 0
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)

    class GoneError(Exception):
        pass

    def gone(done, total):
        raise GoneError()

    (tiny_corpus / "more.txt").write_text("Fresh news about the harbour.\n")
    with pytest.raises(GoneError):  # Venomous never calls it itself: only the fallback does
        Library.build([tiny_corpus], index_dir=tmp_path / "index", embedder=Venomous(), full=True, progress=gone)


def _calls(seen: list):
    return lambda done, total: seen.append((done, total))
