"""Built-in evaluation: SQuAD (v1.1, v2.0) and BEIR data sets through qa's own Library and search.

Each run builds a temporary index of the data set with the given settings, asks
every question and returns plain metrics::

    >>> from qa.eval import evaluate_squad                              # doctest: +SKIP
    >>> evaluate_squad("dev-v1.1.json", unit="paragraph").metrics["hit@1"]  # doctest: +SKIP
    0.83

``datasets``: files -> Dataset; ``metrics``: small pure functions (``hit_at``, ``mrr_at``,
``ndcg_at``, ``recall_at``); ``runner``: index, ask, measure.
"""

from .datasets import Dataset, DatasetError, Question, load_beir, load_squad
from .metrics import contains, first_hit, hit_at, mrr_at, ndcg_at, precision_recall, recall_at
from .runner import Report, beir_metrics, evaluate_beir, evaluate_squad, latency_ms, squad_metrics, temporary_index

__all__ = [
    "Dataset",
    "DatasetError",
    "Question",
    "Report",
    "beir_metrics",
    "contains",
    "evaluate_beir",
    "evaluate_squad",
    "first_hit",
    "hit_at",
    "latency_ms",
    "load_beir",
    "load_squad",
    "mrr_at",
    "ndcg_at",
    "precision_recall",
    "recall_at",
    "squad_metrics",
    "temporary_index",
]
