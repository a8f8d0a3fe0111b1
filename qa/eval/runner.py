"""Run an evaluation: index a data set through ``Library`` in a temporary folder, ask every question, measure."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..answering import forget_sentences
from ..config import Settings
from ..embedding import CachedEmbedder, Embedding, load_embedder
from ..indexer import Collection
from ..library import Library
from .datasets import Dataset, load_beir, load_squad
from .metrics import contains, first_hit, hit_at, mrr_at, ndcg_at, precision_recall, recall_at

SQUAD_K = 20  # passages asked per question: enough for hit@20 and MRR@10
BEIR_DOCS = 100  # documents needed per query for Recall@100
LATENCY_SAMPLE = 50  # questions timed with the bare model, to report median latency


@dataclass(frozen=True)
class Report:
    """What one evaluation measured. ``metrics`` maps a metric's name to its value."""

    dataset: str
    unit: str
    mode: str
    questions: int
    articles: int
    chunks: int
    metrics: dict[str, float]

    def as_dict(self) -> dict:
        """The counts and every metric in one flat dict (what ``qa eval --json`` prints)."""
        return {
            "dataset": self.dataset,
            "unit": self.unit,
            "mode": self.mode,
            "questions": self.questions,
            "articles": self.articles,
            "chunks": self.chunks,
            **self.metrics,
        }

    def summary(self) -> str:
        """A heading line with the counts, then one line per metric."""
        head = (
            f"{self.dataset} ({self.unit}): {self.questions} questions over {self.articles} articles, "
            f"{self.chunks} chunks, mode {self.mode}"
        )
        return "\n".join([head] + [f"  {name:>22}: {value:.4g}" for name, value in self.metrics.items()])


def evaluate_squad(
    path: str | Path,
    unit: str = "paragraph",
    settings: Settings | None = None,
    embedder: Embedding | None = None,
    limit: int | None = None,
) -> Report:
    """Index a SQuAD file in a temporary folder and measure ``settings`` on it (see ``squad_metrics``)."""
    dataset = load_squad(path, unit, limit)
    with temporary_index(dataset, settings, embedder) as lib:
        return _report(dataset, unit, lib, squad_metrics(lib, dataset))


def evaluate_beir(
    folder: str | Path,
    split: str = "test",
    settings: Settings | None = None,
    embedder: Embedding | None = None,
    limit: int | None = None,
) -> Report:
    """Index a BEIR folder in a temporary folder and measure ``settings`` on it (see ``beir_metrics``)."""
    dataset = load_beir(folder, split, limit)
    with temporary_index(dataset, settings, embedder) as lib:
        return _report(dataset, "document", lib, beir_metrics(lib, dataset))


@contextlib.contextmanager
def temporary_index(
    dataset: Dataset, settings: Settings | None = None, embedder: Embedding | None = None
) -> Iterator[Library]:
    """A Library over a temporary index of ``dataset``, removed on exit.

    The embedder is wrapped in a ``CachedEmbedder`` (unless it is one), so questions and
    sentences are embedded once however many configurations are measured.
    """
    settings = settings or Settings.from_env()
    embedder = embedder or load_embedder(settings.model)
    embedder = embedder if isinstance(embedder, CachedEmbedder) else CachedEmbedder(embedder)
    with tempfile.TemporaryDirectory(prefix="qa-eval-") as tmp:
        articles = Collection(dataset.articles, [])
        lib = Library.build(
            articles, Path(tmp) / "index", full=True, settings=settings, embedder=embedder, progress=False
        )
        try:
            yield lib
        finally:
            lib.close()


def _report(dataset: Dataset, unit: str, lib: Library, metrics: dict[str, float]) -> Report:
    info = lib.info()
    return Report(dataset.name, unit, lib.settings.mode, len(dataset.questions), info.articles, info.chunks, metrics)


def latency_ms(lib: Library, questions: Sequence[str], k: int = 10) -> float:
    """Median milliseconds of ``lib.search`` over ``questions``, embedding each with the bare model."""
    forget_sentences()  # the measuring pass warmed it; time what a fresh process would do
    embedder = lib.embedder.inner if isinstance(lib.embedder, CachedEmbedder) else lib.embedder
    bare = Library(lib.store, embedder, lib.settings)
    times = []
    for q in questions[:LATENCY_SAMPLE]:
        began = time.perf_counter()
        bare.search(q, k=k, highlight=False)
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times) if times else 0.0


def squad_metrics(lib: Library, dataset: Dataset) -> dict[str, float]:
    """hit@1/5/20, MRR@10 and answer-sentence accuracy on the answerable questions; words per
    passage; median latency; and where some questions are unanswerable (SQuAD v2.0), the
    precision and recall of "not in the articles" and the share of answerable ones refused.

    A passage is a hit when it comes from the question's article and its span contains a
    reference answer's span; the answer sentence is the top passage's highlight.
    """
    lib.embedder.encode([q.text for q in dataset.questions])  # one batch instead of one call each
    ranks, sentence_hits, words, refused, impossible = [], [], [], [], []
    for q in dataset.questions:
        passages = lib.search(q.text, k=SQUAD_K, highlight=True)
        refused.append(lib.not_in_articles(q.text, passages))
        impossible.append(q.impossible)
        if q.impossible:
            continue
        ranks.append(
            first_hit(p.article_id == q.article_id and contains((p.start, p.end), q.answers) for p in passages)
        )
        top = passages[0] if passages else None
        sentence_hits.append(
            bool(
                top
                and top.article_id == q.article_id
                and top.highlight_start is not None
                and contains((top.highlight_start, top.highlight_end), q.answers)
            )
        )
        words.extend(len(p.text.split()) for p in passages[:5])
    metrics = {
        "hit@1": hit_at(ranks, 1),
        "hit@5": hit_at(ranks, 5),
        "hit@20": hit_at(ranks, 20),
        "mrr@10": mrr_at(ranks, 10),
        "answer_sentence": _mean(sentence_hits),
        "words_per_passage": _mean(words),
        "latency_ms": latency_ms(lib, [q.text for q in dataset.questions]),
    }
    if any(impossible):
        precision, recall = precision_recall(refused, impossible)
        answerable = [r for r, i in zip(refused, impossible) if not i]
        metrics.update(no_answer_precision=precision, no_answer_recall=recall, answerable_refused=_mean(answerable))
    return metrics


def beir_metrics(lib: Library, dataset: Dataset) -> dict[str, float]:
    """Document-level nDCG@10 and Recall@100 (a document's score is its best passage's), and latency.

    As BEIR does by default, a document whose id equals the query's id is not counted.
    """
    lib.embedder.encode([q.text for q in dataset.questions])
    chunks = lib.info().chunks
    ndcgs, recalls = [], []
    for q in dataset.questions:
        docs = _documents(lib, q.text, BEIR_DOCS, chunks)
        docs = [d for d in docs if d != q.id]
        ndcgs.append(ndcg_at(docs, dataset.qrels[q.id], 10))
        recalls.append(recall_at(docs, dataset.qrels[q.id], 100))
    return {
        "ndcg@10": _mean(ndcgs),
        "recall@100": _mean(recalls),
        "latency_ms": latency_ms(lib, [q.text for q in dataset.questions]),
    }


def _documents(lib: Library, question: str, n: int, chunks: int) -> list[str]:
    """The best ``n`` distinct articles for ``question``, asking for more passages until there are enough."""
    k = 3 * n
    while True:
        docs = list(dict.fromkeys(p.article_id for p in lib.search(question, k=min(k, chunks))))
        if len(docs) >= n or k >= chunks:
            return docs[:n]
        k *= 2


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0
