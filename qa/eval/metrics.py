"""Retrieval metrics, small and pure: first-hit ranks, hit@k, MRR@k, nDCG@k, recall@k, precision and recall."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def first_hit(flags: Iterable[bool]) -> int | None:
    """1-based rank of the first true flag, or None.

    >>> first_hit([False, True, True])
    2
    """
    return next((n for n, f in enumerate(flags, start=1) if f), None)


def hit_at(ranks: Sequence[int | None], k: int) -> float:
    """Share of questions whose first hit is at rank ``k`` or better.

    >>> hit_at([1, 2, None, 6], 5)
    0.5
    """
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def mrr_at(ranks: Sequence[int | None], k: int = 10) -> float:
    """Mean reciprocal rank, counting only hits at rank ``k`` or better.

    >>> mrr_at([1, 2, None, 20])
    0.375
    """
    return sum(1 / r for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def ndcg_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    """nDCG@k with linear gains and log2 discounts, as trec_eval (and so BEIR) computes it.

    >>> round(ndcg_at(["x", "a"], {"a": 1}), 4)
    0.6309
    """
    dcg = sum(relevant.get(d, 0) / math.log2(n + 1) for n, d in enumerate(ranked[:k], start=1))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(n + 1) for n, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 100) -> float:
    """Share of the relevant documents found in the top ``k``.

    >>> recall_at(["a", "x", "b"], {"a": 1, "b": 1}, k=2)
    0.5
    """
    wanted = {d for d, g in relevant.items() if g > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def contains(span: tuple[int, int], answers: Iterable[tuple[int, int]]) -> bool:
    """Whether ``span`` (start, end) contains one of the answer spans.

    >>> contains((0, 10), [(8, 12), (2, 5)])
    True
    """
    return any(span[0] <= s and e <= span[1] for s, e in answers)


def precision_recall(predicted: Sequence[bool], actual: Sequence[bool]) -> tuple[float, float]:
    """Precision and recall of the positive class.

    >>> precision_recall([True, True, False], [True, False, True])
    (0.5, 0.5)
    """
    tp = sum(1 for p, a in zip(predicted, actual) if p and a)
    pp, ap = sum(map(bool, predicted)), sum(map(bool, actual))
    return (tp / pp if pp else 0.0), (tp / ap if ap else 0.0)
