"""Candidates and their fusion, every search configuration, and the optional cross-encoder reranker."""

import pytest

from qa import Library, Settings
from qa.retrieval import convex, rrf


def _ids(ranking):
    return [i for i, _ in ranking]


def test_convex_fusion_keeps_a_clear_lexical_winner_ahead():
    dense = [(1, 0.60), (2, 0.59), (3, 0.58), (4, 0.40), (5, 0.35), (6, 0.30)]
    lexical = [(3, 30.0), (1, 10.0)]
    assert convex(dense, lexical)[0][0] == 3  # far ahead on BM25, nearly level on cosine
    assert rrf([_ids(dense), _ids(lexical)], [0.5, 0.5])[0][0] == 1  # rank fusion only sees the ranks


@pytest.mark.parametrize(
    ("dense", "lexical", "first"),
    [
        ([], [], None),
        ([(1, 0.9)], [], 1),
        ([], [(4, 3.0)], 4),
        ([(1, 0.9), (2, 0.1)], [(2, 5.0), (1, 4.9)], 1),
    ],
)
def test_convex_fusion_edge_cases(dense, lexical, first):
    fused = convex(dense, lexical)
    assert (fused[0][0] if fused else None) == first
    assert len(fused) == len({i for i, _ in dense + lexical})


def test_dense_weight_one_is_dense_order():
    dense, lexical = [(1, 0.9), (2, 0.8), (3, 0.7)], [(3, 9.0), (2, 8.0), (1, 1.0)]
    assert [i for i, _ in convex(dense, lexical, dense_weight=1.0)] == [1, 2, 3]
    assert [i for i, _ in convex(dense, lexical, dense_weight=0.0)] == [3, 2, 1]


@pytest.mark.parametrize("changes", [{"fusion": "max"}, {"dense_weight": 1.5}, {"answer_candidates": -1}])
def test_bad_fusion_settings_are_refused(changes):
    with pytest.raises(ValueError):
        Settings(**changes)


@pytest.mark.parametrize(
    "settings",
    [
        Settings(),
        Settings(answer_candidates=0),
        Settings(fusion="rrf"),
        Settings(mode="dense"),
        Settings(mode="lexical", answer_candidates=1),
    ],
)
def test_every_configuration_finds_the_known_answer(tiny_corpus, tmp_path, fake_embedder, settings):
    lib = Library.build([tiny_corpus], index_dir=tmp_path / "index", settings=settings, embedder=fake_embedder)
    [top] = lib.search("How many jobs will General Motors cut in Michigan?", k=1, highlight=True)
    assert top.title == "GM cuts jobs" and "5,000" in top.highlight
    assert top.answer_score is not None


def test_reranker_code_path_with_a_local_cross_encoder(tiny_corpus, tmp_path, real_embedder):
    # The packaged MiniLM folder with a fresh classification head: its scores mean nothing,
    # the point is that the setting loads a CrossEncoder and re-orders by its scores.
    settings = Settings(reranker="all-MiniLM-L6-v2", answer_candidates=0)
    lib = Library.build([tiny_corpus], index_dir=tmp_path / "index", settings=settings, embedder=real_embedder)
    passages = lib.search("Where did Apple open a store?", k=3)
    assert len(passages) == 3
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    assert {p.title for p in passages} == {"Apple opens a store in Paris", "boeing", "GM cuts jobs"}


def test_reranker_that_cannot_load_says_what_to_do(tiny_corpus, tmp_path, fake_embedder):
    from qa import ModelError

    lib = Library.build(
        [tiny_corpus],
        index_dir=tmp_path / "index",
        embedder=fake_embedder,
        settings=Settings(reranker=str(tmp_path / "no-such-model")),
    )
    with pytest.raises(ModelError, match="QA_RERANKER"):
        lib.search("Where did Apple open a store?", k=1)
