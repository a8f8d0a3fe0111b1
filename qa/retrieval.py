"""Candidates for a question: dense (FAISS) and lexical (FTS5 BM25) rankings of chunk ids, and their fusion."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from . import filters
from .config import Settings
from .filters import Filter
from .store import Store

if TYPE_CHECKING:
    from .search import Passage

# Runs each search's full-text query beside its question encoding.
_LEXICAL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="qa-lexical")


def candidates(
    store: Store, embedder, question: str, n: int, settings: Settings, where: Filter = filters.NONE
) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """The question's vector, and up to ``n`` candidates from each retriever as (chunk id, score), best first.

    ``settings.mode`` picks the retrievers; hybrid mode fuses their rankings by ``settings.fusion``
    (``convex`` or ``rrf``) with ``settings.dense_weight`` (and ``settings.rrf_k``). Each retriever
    searches only the chunks that ``where`` lets through.
    """
    # The full-text query needs no vector: it runs while the model encodes the question.
    lexical_job = _LEXICAL.submit(store.lexical, question, n, where) if settings.mode != "dense" else None
    qvec = embedder.encode([question], progress=False)[0]
    exact = settings.dense_search == "exact"
    dense = store.dense(qvec, n, exact=exact, where=where) if settings.mode != "lexical" else []
    lexical = lexical_job.result() if lexical_job else []
    if settings.mode == "dense":
        return qvec, dense
    if settings.mode == "lexical":
        return qvec, lexical
    if settings.fusion == "rrf":
        weights = [settings.dense_weight, 1 - settings.dense_weight]
        return qvec, rrf([[i for i, _ in dense], [i for i, _ in lexical]], weights, settings.rrf_k)
    return qvec, convex(_exact_dense(store, qvec, dense, lexical), lexical, settings.dense_weight)


def rrf(rankings: Sequence[Sequence[Hashable]], weights: Sequence[float], rrf_k: int = 60) -> list[tuple]:
    """Weighted reciprocal-rank fusion of several rankings of ids: (id, score) best first, where an id
    scores the sum of ``weight * (rrf_k + 1) / (rrf_k + rank)`` (rank 1 in every ranking: the weights' sum).

    >>> rrf([["a", "b"], ["b"]], [1.0, 0.5], rrf_k=1)
    [('b', 1.1666666666666665), ('a', 1.0)]
    """
    scores: dict = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, i in enumerate(ranking):
            scores[i] = scores.get(i, 0.0) + weight * (rrf_k + 1) / (rrf_k + rank + 1)
    return sorted(scores.items(), key=lambda item: -item[1])


def convex(
    dense: list[tuple[int, float]], lexical: list[tuple[int, float]], dense_weight: float = 0.5
) -> list[tuple[int, float]]:
    """Convex fusion of standardised scores: ``w * z(cosine) + (1 - w) * z(bm25)``, best first.

    Each list's scores are turned into z-scores over the union of candidates (a
    candidate missing from the lexical list has BM25 0; ``dense`` should cover every
    candidate, see ``_exact_dense``). Unlike rank fusion this keeps how far ahead a
    clear winner is, which is what SQuAD and SciFact reward (docs/benchmarks.md).

    >>> [i for i, _ in convex([(1, .9), (2, .5), (3, .4)], [(2, 9.0), (3, 1.0)])]
    [2, 1, 3]
    """
    ids = list(dict.fromkeys([i for i, _ in dense] + [i for i, _ in lexical]))
    if not ids:
        return []
    d, lx = dict(dense), dict(lexical)
    score = dense_weight * zscores([d.get(i, 0.0) for i in ids]) + (1 - dense_weight) * zscores(
        [lx.get(i, 0.0) for i in ids]
    )
    order = np.argsort(-score, kind="stable")
    return [(ids[j], float(score[j])) for j in order]


def zscores(values: Sequence[float]) -> np.ndarray:
    """``values`` standardised: minus their mean, over their standard deviation (0 when all are equal).

    >>> zscores([1.0, 3.0]).round(6).tolist()
    [-1.0, 1.0]
    """
    x = np.asarray(values, dtype=np.float64)
    return (x - x.mean()) / (x.std() + 1e-9)


def rerank(passages: list[Passage], question: str, settings: Settings) -> list[Passage]:
    """The first ``answer_candidates`` (at least 10) passages re-scored and re-ordered by the
    cross-encoder ``settings.reranker``; the rest follow as they were."""
    from .embedding import load_reranker

    n = max(10, settings.answer_candidates)
    head = passages[:n]
    scores = load_reranker(settings.reranker).score(question, [p.text for p in head])
    order = np.argsort(-scores, kind="stable")
    return [replace(head[j], score=round(float(scores[j]), 6)) for j in order] + passages[n:]


def _exact_dense(
    store: Store, qvec: np.ndarray, dense: list[tuple[int, float]], lexical: list[tuple[int, float]]
) -> list[tuple[int, float]]:
    """``dense`` plus the true cosine of each lexical-only candidate (its stored vector is at hand)."""
    known = {i for i, _ in dense}
    extra = [i for i, _ in lexical if i not in known]
    sims = store.vectors(extra) @ qvec if extra else []
    return dense + [(i, float(s)) for i, s in zip(extra, sims)]
