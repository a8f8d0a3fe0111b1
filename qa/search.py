"""Question to ranked Passages: dense and lexical retrieval, fused; the answering sentence picked."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace

import numpy as np

from .chunking import sentence_spans
from .config import Settings
from .errors import QuestionError
from .store import STOPWORDS, Store

# How many candidates each retriever contributes before fusion, at least.
RETRIEVER_CANDIDATES = 100
# A question is cut here before anything else; the model reads about this much (256 tokens) anyway.
MAX_QUESTION_CHARS = 1000
# The most passages one request may ask for, on every interface (the app, HTTP, the CLI).
MAX_K = 50
# Runs each search's full-text query beside its question encoding.
_LEXICAL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="qa-lexical")
# Sentence vectors kept between questions (passages recur): about 1.5 kB each.
SENTENCE_CACHE = 50_000


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk. ``start``/``end`` and ``highlight_*`` are offsets into the article text.

    ``answer_score`` is the cosine of the question and the answering sentence plus the
    share of the question's terms it holds (see ``answer_rerank``): the "not in the
    articles" decision uses it.
    """

    text: str
    score: float
    article_id: str
    title: str
    source: str
    date: str
    url: str
    start: int
    end: int
    chunk_id: int
    similarity: float = 0.0
    highlight_start: int | None = None
    highlight_end: int | None = None
    answer_score: float | None = None

    @property
    def highlight(self) -> str:
        """The answering sentence, when one was selected."""
        if self.highlight_start is None:
            return ""
        return self.text[self.highlight_start - self.start : self.highlight_end - self.start]

    def as_dict(self) -> dict:
        """The passage as JSON: its fields and its ``highlight`` sentence (the CLI's and the HTTP routes' shape)."""
        return {**asdict(self), "highlight": self.highlight}


def check_question(question: object) -> str:
    """The question as it is searched: whitespace collapsed, cut to ``MAX_QUESTION_CHARS``.

    The one check of a question, for every interface. QuestionError when it is empty or not text.

    >>> check_question("  Who  went? ")
    'Who went?'
    """
    if question is None or (isinstance(question, str) and not question.strip()):
        raise QuestionError('The question is empty. Ask a non-empty question, e.g. "Who traveled to Mexico City?".')
    if not isinstance(question, str):
        raise QuestionError(f"The question must be text, not {type(question).__name__}.")
    return " ".join(question.split())[:MAX_QUESTION_CHARS]


def check_k(k: object) -> int:
    """``k``, the number of passages asked for, if it is a whole number from 1 to ``MAX_K``; else QuestionError.

    >>> check_k(3)
    3
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise QuestionError(f'"k" must be a whole number from 1 to {MAX_K}, got {k!r}.')
    return k


def retrieve(store: Store, embedder, question: str, k: int, settings: Settings) -> list[Passage]:
    """The top ``k`` passages for ``question`` under ``settings.mode``.

    Hybrid mode fuses dense and lexical candidates (``settings.fusion``); then an optional
    cross-encoder (``settings.reranker``) and the answer-sentence stage
    (``settings.answer_candidates``) re-order the best few. Passages that went through
    the answer stage come with their answering sentence marked.
    """
    n = max(RETRIEVER_CANDIDATES, 2 * k)
    # The full-text query needs no vector: it runs while the model encodes the question.
    lexical_job = _LEXICAL.submit(store.lexical, question, n) if settings.mode != "dense" else None
    qvec = embedder.encode([question], progress=False)[0]
    dense = store.dense(qvec, n) if settings.mode != "lexical" else []
    lexical = lexical_job.result() if lexical_job else []
    if settings.mode == "dense":
        ranked = dense
    elif settings.mode == "lexical":
        ranked = lexical
    elif settings.fusion == "rrf":
        ranked = fuse(dense, lexical, settings.dense_weight, settings.rrf_k)
    else:
        ranked = fuse_scores(_exact_dense(store, qvec, dense, lexical), lexical, settings.dense_weight)
    top = ranked[: max(k, settings.answer_candidates)]
    rows = store.chunks(i for i, _ in top)
    sims = store.vectors(i for i, _ in top) @ qvec if top else []
    passages = [_passage(rows[i], score, float(sim)) for (i, score), sim in zip(top, sims) if i in rows]
    if settings.reranker:
        passages = _rerank(passages, question, settings)
    if settings.answer_candidates:
        passages = answer_rerank(passages, embedder, question, qvec, settings, store)
    return passages[:k]


def fuse(
    dense: list[tuple[int, float]], lexical: list[tuple[int, float]], dense_weight: float = 0.5, rrf_k: int = 60
) -> list[tuple[int, float]]:
    """Weighted reciprocal-rank fusion, scaled so rank 1 in both lists scores 1.0.

    >>> fuse([(1, .9), (2, .8)], [(2, 7.0), (3, 5.0)])[0][0]
    2
    """
    scores = weighted_rrf([[i for i, _ in dense], [i for i, _ in lexical]], [dense_weight, 1 - dense_weight], rrf_k)
    return sorted(scores.items(), key=lambda item: -item[1])


def weighted_rrf(rankings: Sequence[Sequence[Hashable]], weights: Sequence[float], rrf_k: int = 60) -> dict:
    """Reciprocal-rank fusion of several rankings of ids: id -> sum of ``weight * (k+1) / (k+rank)``.

    >>> weighted_rrf([["a", "b"], ["b"]], [1.0, 0.5], rrf_k=1)
    {'a': 1.0, 'b': 1.1666666666666665}
    """
    scores: dict = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, i in enumerate(ranking):
            scores[i] = scores.get(i, 0.0) + weight * (rrf_k + 1) / (rrf_k + rank + 1)
    return scores


def fuse_scores(
    dense: list[tuple[int, float]], lexical: list[tuple[int, float]], dense_weight: float = 0.5
) -> list[tuple[int, float]]:
    """Convex fusion of standardised scores: ``w * z(cosine) + (1 - w) * z(bm25)``.

    Each list's scores are turned into z-scores over the union of candidates (a
    candidate missing from the lexical list has BM25 0; ``dense`` should cover every
    candidate, see ``_exact_dense``). Unlike rank fusion this keeps how far ahead a
    clear winner is, which is what SQuAD and SciFact reward (docs/benchmarks.md).

    >>> [i for i, _ in fuse_scores([(1, .9), (2, .5), (3, .4)], [(2, 9.0), (3, 1.0)])]
    [2, 1, 3]
    """
    ids = list(dict.fromkeys([i for i, _ in dense] + [i for i, _ in lexical]))
    if not ids:
        return []
    d, lx = dict(dense), dict(lexical)
    score = dense_weight * _z([d.get(i, 0.0) for i in ids]) + (1 - dense_weight) * _z([lx.get(i, 0.0) for i in ids])
    order = np.argsort(-score, kind="stable")
    return [(ids[j], float(score[j])) for j in order]


def _exact_dense(
    store: Store, qvec: np.ndarray, dense: list[tuple[int, float]], lexical: list[tuple[int, float]]
) -> list[tuple[int, float]]:
    """``dense`` plus the true cosine of each lexical-only candidate (its stored vector is at hand)."""
    known = {i for i, _ in dense}
    extra = [i for i, _ in lexical if i not in known]
    sims = store.vectors(extra) @ qvec if extra else []
    return dense + [(i, float(s)) for i, s in zip(extra, sims)]


def _z(values: list[float]) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return (x - x.mean()) / (x.std() + 1e-9)


def answer_rerank(
    passages: list[Passage],
    embedder,
    question: str,
    qvec: np.ndarray | None = None,
    settings: Settings | None = None,
    store: Store | None = None,
) -> list[Passage]:
    """Mark each passage's answering sentence and re-order the first ``answer_candidates``.

    A passage's new score is ``z(score) + w * (z(best sentence cosine) + z(best term overlap))``
    over those candidates (overlap weighted by ``_local_idf``), ``w = settings.answer_weight``:
    SQuAD questions paraphrase one sentence, so the best sentence says more than the whole
    chunk's vector. Sentence vectors come from ``store`` where the build kept them, else
    they are encoded now.
    """
    settings = settings or Settings()
    n = settings.answer_candidates or len(passages)
    head, tail = passages[:n], passages[n:]
    if not head:
        return passages
    qvec = embedder.encode([question], progress=False)[0] if qvec is None else qvec
    stored = store.sentences(p.chunk_id for p in head) if store is not None else {}
    # Sentences the build kept no vector for are encoded now, all in one call (per-passage
    # calls cost ~10x the overhead).
    todo = {
        p.chunk_id: (p, [(p.start + s, p.start + e) for s, e in sentence_spans(p.text)])
        for p in head
        if p.chunk_id not in stored
    }
    fresh = iter(_sentence_vectors(embedder, [_text(p, span) for p, spans in todo.values() for span in spans]))
    for i, (_, spans) in todo.items():
        stored[i] = (spans, np.array([next(fresh) for _ in spans]))
    split = [stored[p.chunk_id] for p in head]
    marked, cosines, overlaps = [], [], []
    # Question terms weigh by how rare they are among these candidates' sentences: terms
    # every candidate shares (the topic) say little about which one answers.
    terms = _terms(question)
    words = [[_words(_text(p, span)) for span in spans] for p, (spans, _) in zip(head, split)]
    idf = _local_idf(terms, [w for sentences in words for w in sentences])
    for p, (spans, vectors), sentences in zip(head, split, words):
        cos = vectors @ qvec
        lap = np.array([_share(terms, w, idf) for w in sentences])
        best = int(np.argmax(cos + OVERLAP_WEIGHT * lap))
        plain = _share(terms, sentences[best])
        marked.append(
            replace(
                p,
                highlight_start=spans[best][0],
                highlight_end=spans[best][1],
                answer_score=round(float(cos[best] + OVERLAP_WEIGHT * plain), 6),
            )
        )
        cosines.append(float(cos.max()))
        overlaps.append(float(lap.max()))
    if len(head) > 1 and settings.answer_weight:
        score = _z([p.score for p in head]) + settings.answer_weight * (_z(cosines) + _z(overlaps))
        order = np.argsort(-score, kind="stable")
        marked = [replace(marked[j], score=round(float(score[j]), 6)) for j in order]
    return marked + tail


# Term overlap's share in choosing the answering sentence (cosine + this * overlap): 1.0 measured best
# on SQuAD v1.1 dev (0.1: 68.1%, 1.0: 69.9% of top sentences hold the answer).
OVERLAP_WEIGHT = 1.0


def highlight(passages: list[Passage], embedder, question: str, store: Store | None = None) -> list[Passage]:
    """Each passage with its best answering sentence marked (cosine plus term overlap).

    Passages already marked by the answer stage of ``retrieve`` are kept as they are.
    """
    todo = [n for n, p in enumerate(passages) if p.highlight_start is None]
    if not todo:
        return passages
    marked = answer_rerank(
        [passages[n] for n in todo],
        embedder,
        question,
        settings=Settings(answer_candidates=len(todo), answer_weight=0.0),
        store=store,
    )
    out = list(passages)
    for n, p in zip(todo, marked):
        out[n] = p
    return out


# Questions with a negation are mostly the unanswerable ones in SQuAD v2.0 (13% vs 3% of answerable).
NEGATION = re.compile(
    r"\b(not|never|no|n't|without|none|nothing|least|fewest|except|cannot|didn't|isn't|"
    r"wasn't|doesn't|aren't|weren't)\b"
)


# answerability = sum of weight * feature, fitted by ``python bench/noanswer.py`` on half of
# SQuAD v2.0 dev and checked on the other half (docs/benchmarks.md, "not in the articles").
ANSWERABILITY = {"similarity": 0.75, "sentence_cosine": 1.0, "overlap": 0.3, "negation": -0.8}


def answer_features(passages: list[Passage], question: str) -> dict[str, float]:
    """What ``answerability`` weighs, about the top passage: its cosine with the question
    (``similarity``), its answering sentence's cosine and term overlap, and whether the
    question has a negation. Empty with no passage or no answering sentence."""
    if not passages or passages[0].answer_score is None:
        return {}
    top = passages[0]
    lap = _overlap(question, top.highlight)
    return {
        "similarity": top.similarity,
        "sentence_cosine": top.answer_score - OVERLAP_WEIGHT * lap,
        "overlap": lap,
        "negation": float(bool(NEGATION.search(question.lower()))),
    }


def answerability(passages: list[Passage], question: str) -> float:
    """How well the top passage answers ``question``; "not in the articles" below a threshold.

    The weighted sum of ``answer_features`` (weights: ``ANSWERABILITY``); the passage's
    cosine alone when it has no answering sentence; 0 with no passage.
    """
    if not passages:
        return 0.0
    features = answer_features(passages, question)
    if not features:
        return passages[0].similarity
    return sum(ANSWERABILITY[name] * value for name, value in features.items())


def not_in_articles(passages: list[Passage], settings: Settings, question: str = "") -> bool:
    """Whether to say that nothing in the articles answers ``question``.

    True when nothing was found or ``answerability`` is below ``settings.no_answer_threshold``
    (1.089 by default, see ``Settings.no_answer_threshold``).
    """
    return not passages or answerability(passages, question) < settings.no_answer_threshold


def _text(p: Passage, span: tuple[int, int]) -> str:
    return p.text[span[0] - p.start : span[1] - p.start]


_CACHE: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _sentence_vectors(embedder, sentences: list[str]) -> np.ndarray:
    """Vectors of ``sentences``, from a small LRU cache where possible: top passages recur."""
    if not sentences:
        return np.zeros((0, 0), dtype=np.float32)
    keys = [(embedder.name, s) for s in sentences]
    with _CACHE_LOCK:
        found = {key: _CACHE[key] for key in keys if key in _CACHE}
        for key in found:
            _CACHE.move_to_end(key)
    missing = [key for key in dict.fromkeys(keys) if key not in found]
    if missing:
        vectors = embedder.encode([s for _, s in missing], progress=False)
        found.update(zip(missing, vectors))
        with _CACHE_LOCK:
            _CACHE.update(zip(missing, vectors))
            while len(_CACHE) > SENTENCE_CACHE:
                _CACHE.popitem(last=False)
    return np.stack([found[key] for key in keys])


def forget_sentences() -> None:
    """Empty the sentence-vector cache (to time cold questions)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _rerank(passages: list[Passage], question: str, settings: Settings) -> list[Passage]:
    """Re-score the first ``answer_candidates`` (at least 10) passages with the cross-encoder."""
    from .embedding import load_reranker

    n = max(10, settings.answer_candidates)
    head = passages[:n]
    scores = load_reranker(settings.reranker).score(question, [p.text for p in head])
    order = np.argsort(-scores, kind="stable")
    return [replace(head[j], score=round(float(scores[j]), 6)) for j in order] + passages[n:]


def _overlap(question: str, sentence: str) -> float:
    """The share of the question's terms (stopwords aside) found in ``sentence``.

    >>> _overlap("Who won the cup?", "Ann won it.")
    0.5
    """
    return _share(_terms(question), _words(sentence))


def _share(terms: set[str], words: set[str], idf: dict[str, float] | None = None) -> float:
    """The share of ``terms`` among ``words``, each term weighted by ``idf`` when given."""
    if idf is None:
        return len(terms & words) / len(terms) if terms else 0.0
    total = sum(idf[w] for w in terms)
    return sum(idf[w] for w in terms & words) / total if total else 0.0


def _local_idf(terms: set[str], sentences: list[set[str]]) -> dict[str, float]:
    """``log(1 + n / (1 + df))`` of each term over ``sentences`` (n sets of words).

    Weighting the overlap this way lifted SQuAD v1.1 dev hit@1 from .843 to .849 and the
    answer sentence from 70.3% to 71.5% (every 20th question, with 10 candidates).
    """
    return {w: float(np.log(1 + len(sentences) / (1 + sum(w in x for x in sentences)))) for w in terms}


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def _terms(text: str) -> set[str]:
    return _words(text) - STOPWORDS


def _passage(row, score: float, similarity: float) -> Passage:
    return Passage(
        text=row.text,
        score=round(score, 6),
        article_id=row.article_id,
        title=row.title,
        source=row.source,
        date=row.date,
        url=row.url,
        start=row.start,
        end=row.end,
        chunk_id=row.id,
        similarity=round(similarity, 6),
    )
