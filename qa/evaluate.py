"""Built-in evaluation: SQuAD (v1.1, v2.0) and BEIR data sets through qa's own index and search.

Each run builds a temporary index of the data set with the given settings, asks
every question and returns plain metrics::

    >>> from qa.evaluate import evaluate_squad                          # doctest: +SKIP
    >>> evaluate_squad("dev-v1.1.json", unit="paragraph").metrics["hit@1"]  # doctest: +SKIP
    0.83

Metric functions are small and pure (``hit_at``, ``mrr_at``, ``ndcg_at``, ``recall_at``).
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .articles import Article
from .config import Settings
from .errors import QAError

UNITS = ("article", "paragraph")
SQUAD_K = 20  # passages asked per question: enough for hit@20 and MRR@10
BEIR_DOCS = 100  # documents needed per query for Recall@100
LATENCY_SAMPLE = 50  # questions timed with the bare model, to report median latency


class DatasetError(QAError):
    """An evaluation data set is missing or not in the expected format."""


# ---- data sets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    """A question with the character spans of its reference answers in its article's text."""

    id: str
    text: str
    article_id: str = ""
    answers: tuple[tuple[int, int], ...] = ()
    impossible: bool = False


@dataclass(frozen=True)
class Dataset:
    """Articles to index and questions to ask. ``qrels``: BEIR judgements, query id -> {doc id: grade}."""

    name: str
    articles: list[Article]
    questions: list[Question]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)


def load_squad(path: str | Path, unit: str = "paragraph", limit: int | None = None) -> Dataset:
    """A SQuAD v1.1/v2.0 file as a Dataset.

    ``unit="paragraph"``: each paragraph is one article; ``"article"``: each Wikipedia
    article is one article, its paragraphs joined by blank lines (answer offsets shifted
    to match). ``limit``: only the first ``limit`` questions, and only the Wikipedia
    articles they come from are indexed.
    """
    if unit not in UNITS:
        raise DatasetError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    raw = _read_json(path)
    articles: list[Article] = []
    questions: list[Question] = []
    for a_no, wiki in enumerate(raw.get("data", [])):
        if limit is not None and len(questions) >= limit:
            break
        title = str(wiki.get("title", "")).replace("_", " ")
        parts, offset = [], 0
        for p_no, para in enumerate(wiki["paragraphs"]):
            context = para["context"]
            aid = f"{a_no}" if unit == "article" else f"{a_no}.{p_no}"
            if unit == "paragraph":
                articles.append(Article(id=aid, title=title, text=context))
                offset = 0
            for qa in para["qas"]:
                spans = tuple(
                    sorted(
                        {
                            (offset + x["answer_start"], offset + x["answer_start"] + len(x["text"]))
                            for x in qa.get("answers", [])
                        }
                    )
                )
                questions.append(
                    Question(str(qa["id"]), qa["question"], aid, spans, bool(qa.get("is_impossible", False)))
                )
            parts.append(context)
            offset += len(context) + 2
        if unit == "article":
            articles.append(Article(id=f"{a_no}", title=title, text="\n\n".join(parts)))
    if not questions:
        raise DatasetError(f"{path} holds no SQuAD questions (expected data[].paragraphs[].qas[]).")
    return Dataset(Path(path).stem, articles, questions[:limit])


def load_beir(folder: str | Path, split: str = "test", limit: int | None = None) -> Dataset:
    """A BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) as a Dataset.

    An article's text is its title, a blank line, then its text. ``limit``: only the
    first ``limit`` judged queries, over their judged documents plus the first
    ``20 * limit`` others of the corpus.
    """
    folder = Path(folder)
    qrels: dict[str, dict[str, int]] = {}
    for line in _read_lines(folder / "qrels" / f"{split}.tsv")[1:]:
        qid, did, grade = line.split("\t")[:3]
        qrels.setdefault(qid, {})[did] = int(grade)
    queries = {r["_id"]: r["text"] for r in map(json.loads, _read_lines(folder / "queries.jsonl"))}
    qids = [q for q in queries if q in qrels][:limit]
    wanted = {d for q in qids for d in qrels[q]}
    articles = []
    for n, rec in enumerate(map(json.loads, _read_lines(folder / "corpus.jsonl"))):
        if limit is None or rec["_id"] in wanted or n < 20 * limit:
            text = "\n\n".join(x for x in (rec.get("title", "").strip(), rec.get("text", "").strip()) if x)
            articles.append(Article(id=rec["_id"], title=rec.get("title", ""), text=text))
    questions = [Question(q, queries[q]) for q in qids]
    return Dataset(folder.name, articles, questions, {q: qrels[q] for q in qids})


def _read_json(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path} does not exist. Give a SQuAD JSON file, e.g. dev-v1.1.json.") from None
    except ValueError as e:
        raise DatasetError(f"{path} is not valid JSON ({e}).") from None


def _read_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text("utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise DatasetError(
            f"{path} does not exist. Give a BEIR folder with corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv."
        ) from None


# ---- metrics -----------------------------------------------------------------------------------


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
    """Whether ``span`` (start, end) contains one of the answer spans."""
    return any(span[0] <= s and e <= span[1] for s, e in answers)


def precision_recall(predicted: Sequence[bool], actual: Sequence[bool]) -> tuple[float, float]:
    """Precision and recall of the positive class.

    >>> precision_recall([True, True, False], [True, False, True])
    (0.5, 0.5)
    """
    tp = sum(1 for p, a in zip(predicted, actual) if p and a)
    pp, ap = sum(map(bool, predicted)), sum(map(bool, actual))
    return (tp / pp if pp else 0.0), (tp / ap if ap else 0.0)


# ---- running -----------------------------------------------------------------------------------


class CachedEmbedder:
    """An embedder that remembers each text's vector, so repeated texts are embedded once.

    Questions, passages and sentences recur across configurations and questions; the
    model is deterministic, so a cached vector equals a fresh one. ``save``/``load`` keep
    the cache in a plain ``.npz`` file (benchmarks keep theirs under /tmp).
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.max_tokens = getattr(inner, "max_tokens", 254)
        self._vectors: dict[str, np.ndarray] = {}

    def token_spans(self, texts):
        return self.inner.token_spans(texts)

    def encode(self, texts: Sequence[str], progress: bool | None = None) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            for text, vec in zip(missing, self.inner.encode(missing, progress=progress)):
                self._vectors[text] = vec
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])

    def encode_passages(self, texts: Sequence[str], spans, progress: bool | None = None):
        """As ``Embedder.encode_passages``; a sentence's vector is kept under its passage and span."""
        keys = [[f"{t}\x00{s}:{e}" for s, e in sp] for t, sp in zip(texts, spans, strict=True)]
        known = self._vectors
        todo = [n for n, t in enumerate(texts) if t not in known or any(k not in known for k in keys[n])]
        if todo and hasattr(self.inner, "encode_passages"):
            vectors, pooled = self.inner.encode_passages([texts[n] for n in todo], [spans[n] for n in todo], progress)
            for n, vec, sentences in zip(todo, vectors, pooled):
                self._vectors[texts[n]] = vec
                if sentences is not None:
                    self._vectors.update(zip(keys[n], sentences))
        vectors = self.encode(texts, progress)
        return vectors, [
            np.stack([self._vectors[k] for k in ks]) if all(k in self._vectors for k in ks) else None for ks in keys
        ]

    def save(self, path: str | Path) -> None:
        """Write ``PATH.npy`` (vectors) and ``PATH.json`` (model name and texts, in order).

        Vectors already saved there by another run are kept (merged), and each file is
        replaced whole by a rename, so concurrent benchmark runs only ever add.
        """
        path = Path(path)
        self.load(path)
        texts = list(self._vectors)
        vecs = np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)
        with open(path.with_suffix(".tmp.npy"), "wb") as f:
            np.save(f, vecs)
        path.with_suffix(".tmp.json").write_text(json.dumps({"model": self.name, "texts": texts}), "utf-8")
        path.with_suffix(".tmp.npy").replace(path.with_suffix(".npy"))
        path.with_suffix(".tmp.json").replace(path.with_suffix(".json"))

    def load(self, path: str | Path) -> CachedEmbedder:
        """Add the vectors saved at ``path`` when they were made by the same model."""
        path = Path(path)
        try:
            meta = json.loads(path.with_suffix(".json").read_text("utf-8"))
            vecs = np.load(path.with_suffix(".npy"))
        except (OSError, ValueError):
            return self
        if meta.get("model") == self.name and len(meta["texts"]) == len(vecs):
            for text, vec in zip(meta["texts"], vecs):
                self._vectors.setdefault(text, vec)
        return self


def build_index(dataset: Dataset, settings: Settings, embedder, index_dir: str | Path):
    """Index ``dataset.articles`` at ``index_dir`` with qa's own pipeline; returns the open Library."""
    from .indexer import Collection, build
    from .library import Library
    from .store import Store

    settings = settings.with_(index_dir=Path(index_dir))
    build(Collection(dataset.articles, []), settings, embedder, full=True, progress=False)
    return Library(Store.open(settings.index_dir), embedder, settings)


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
        head = (
            f"{self.dataset} ({self.unit}): {self.questions} questions over {self.articles} articles, "
            f"{self.chunks} chunks, mode {self.mode}"
        )
        return "\n".join([head] + [f"  {name:>22}: {value:.4g}" for name, value in self.metrics.items()])


def evaluate_squad(
    path: str | Path, unit: str = "paragraph", settings: Settings | None = None, embedder=None, limit: int | None = None
) -> Report:
    """Index a SQuAD file in a temporary folder and measure ``settings`` on it (see ``squad_metrics``)."""
    dataset = load_squad(path, unit, limit)
    with temporary_index(dataset, settings, embedder) as lib:
        return _report(dataset, unit, lib, squad_metrics(lib, dataset))


def evaluate_beir(
    folder: str | Path, split: str = "test", settings: Settings | None = None, embedder=None, limit: int | None = None
) -> Report:
    """Index a BEIR folder in a temporary folder and measure ``settings`` on it (see ``beir_metrics``)."""
    dataset = load_beir(folder, split, limit)
    with temporary_index(dataset, settings, embedder) as lib:
        return _report(dataset, "document", lib, beir_metrics(lib, dataset))


@contextlib.contextmanager
def temporary_index(dataset: Dataset, settings: Settings | None = None, embedder=None) -> Iterator:
    """A Library over a temporary index of ``dataset``, removed on exit.

    The embedder is wrapped in a ``CachedEmbedder`` (unless it is one), so questions and
    sentences are embedded once however many configurations are measured.
    """
    from .embedding import load_embedder

    settings = settings or Settings.from_env()
    embedder = embedder or load_embedder(settings.model)
    embedder = embedder if isinstance(embedder, CachedEmbedder) else CachedEmbedder(embedder)
    with tempfile.TemporaryDirectory(prefix="qa-eval-") as tmp:
        lib = build_index(dataset, settings, embedder, Path(tmp) / "index")
        try:
            yield lib
        finally:
            lib.close()


def _report(dataset: Dataset, unit: str, lib, metrics: dict[str, float]) -> Report:
    m = lib.store.manifest
    return Report(dataset.name, unit, lib.settings.mode, len(dataset.questions), m["articles"], m["chunks"], metrics)


def latency_ms(lib, questions: Sequence[str], k: int = 10) -> float:
    """Median milliseconds of ``lib.search`` over ``questions``, embedding each with the bare model."""
    from .answering import forget_sentences
    from .library import Library

    forget_sentences()  # the measuring pass warmed it; time what a fresh process would do
    embedder = lib.embedder.inner if isinstance(lib.embedder, CachedEmbedder) else lib.embedder
    bare = Library(lib.store, embedder, lib.settings)
    times = []
    for q in questions[:LATENCY_SAMPLE]:
        began = time.perf_counter()
        bare.search(q, k=k, highlight=False)
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times) if times else 0.0


def squad_metrics(lib, dataset: Dataset) -> dict[str, float]:
    """hit@1/5/20, MRR@10 and answer-sentence accuracy on the answerable questions; words per
    passage; median latency; and where some questions are unanswerable (SQuAD v2.0), the
    precision and recall of "not in the articles" and the share of answerable ones refused.

    A passage is a hit when it comes from the question's article and its span contains a
    reference answer's span; the answer sentence is the top passage's highlight.
    """
    from .answering import not_in_articles

    lib.embedder.encode([q.text for q in dataset.questions])  # one batch instead of one call each
    ranks, sentence_hits, words, refused, impossible = [], [], [], [], []
    for q in dataset.questions:
        passages = lib.search(q.text, k=SQUAD_K, highlight=True)
        refused.append(not_in_articles(passages, lib.settings, q.text))
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


def beir_metrics(lib, dataset: Dataset) -> dict[str, float]:
    """Document-level nDCG@10 and Recall@100 (a document's score is its best passage's), and latency.

    As BEIR does by default, a document whose id equals the query's id is not counted.
    """
    lib.embedder.encode([q.text for q in dataset.questions])
    chunks = lib.store.manifest["chunks"]
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


def _documents(lib, question: str, n: int, chunks: int) -> list[str]:
    """The best ``n`` distinct articles for ``question``, asking for more passages until there are enough."""
    k = 3 * n
    while True:
        docs = list(dict.fromkeys(p.article_id for p in lib.search(question, k=min(k, chunks))))
        if len(docs) >= n or k >= chunks:
            return docs[:n]
        k *= 2


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0
