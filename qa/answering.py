"""The answer stage: each passage's answering sentence, re-ordering by it, and whether anything answers."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .chunking import sentence_spans
from .config import Settings
from .retrieval import zscores
from .store import Store
from .text import STOPWORDS, terms, words

if TYPE_CHECKING:
    from .search import Passage

# Sentence vectors kept between questions (passages recur): about 1.5 kB each.
SENTENCE_CACHE = 50_000
# Term overlap's share in choosing the answering sentence (cosine + this * overlap), measured on SQuAD v1.1 dev.
OVERLAP_WEIGHT = 1.0
# A negation is far more common in SQuAD v2.0's unanswerable questions than in its answerable ones.
NEGATION = re.compile(
    r"\b(not|never|no|n't|without|none|nothing|least|fewest|except|cannot|didn't|isn't|"
    r"wasn't|doesn't|aren't|weren't)\b"
)
# answerability = sum of weight * feature, fitted by bench/noanswer.py (docs/benchmarks.md, "not in the articles").
# passage_overlap weighs against: given the sentence's share of the terms, a passage that holds more of them
# elsewhere matched the topic, not the question (SQuAD v2.0's unanswerable questions are written so).
ANSWERABILITY = {
    "similarity": 0.233,
    "sentence_cosine": 1.0,
    "overlap": 0.447,
    "passage_overlap": -0.127,
    "names": 0.222,
    "negation": -0.476,
}


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
    # Sentences the build kept no vector for are encoded now, all in one call: a call per passage costs far more.
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
    # Terms rare among these candidates' sentences weigh more: the topic, which all share, tells none apart.
    asked = terms(question)
    said = [[words(_text(p, span)) for span in spans] for p, (spans, _) in zip(head, split)]
    idf = _local_idf(asked, [w for sentences in said for w in sentences])
    for p, (spans, vectors), sentences in zip(head, split, said):
        cos = vectors @ qvec
        lap = np.array([_share(asked, w, idf) for w in sentences])
        best = int(np.argmax(cos + OVERLAP_WEIGHT * lap))
        plain = _share(asked, sentences[best])
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
        score = zscores([p.score for p in head]) + settings.answer_weight * (zscores(cosines) + zscores(overlaps))
        order = np.argsort(-score, kind="stable")
        marked = [replace(marked[j], score=round(float(score[j]), 6)) for j in order]
    return marked + tail


def mark_answers(passages: list[Passage], embedder, question: str, store: Store | None = None) -> list[Passage]:
    """Each passage with its best answering sentence marked (cosine plus term overlap), order kept.

    Passages already marked by the answer stage of ``search.retrieve`` are kept as they are.
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


def answer_features(passages: list[Passage], question: str) -> dict[str, float]:
    """What ``answerability`` weighs, about the top passage and ``question``.

    ``similarity``: the passage's cosine with the question; ``sentence_cosine`` and
    ``overlap``: its answering sentence's cosine and share of the question's terms;
    ``passage_overlap``: the passage's share of them; ``names``: the share of the question's
    names and numbers (``names``) that the passage holds (1 when it asks none); ``negation``:
    whether the question has one. Only the top passage counts, so ``k`` changes nothing.
    A passage with no answering sentence marked stands in for it (its cosine, its terms).
    Empty with no passage.
    """
    if not passages:
        return {}
    top = passages[0]
    marked = top.answer_score is not None
    lap = _overlap(question, top.highlight if marked else top.text)
    return {
        "similarity": top.similarity,
        "sentence_cosine": top.answer_score - OVERLAP_WEIGHT * lap if marked else top.similarity,
        "overlap": lap,
        "passage_overlap": _overlap(question, top.text),
        "names": _found(names(question), words(top.text)),
        "negation": float(bool(NEGATION.search(question.lower()))),
    }


def names(question: str) -> set[str]:
    """The question's names and numbers, lower-cased: its capitalised words and words with a digit,
    stopwords aside (a question's first word is capitalised, and usually a stopword).

    >>> sorted(names("When did Beyonce release Dangerously in Love in 2003?"))
    ['2003', 'beyonce', 'dangerously', 'love']
    """
    found = re.findall(r"\b(?:[A-Z]\w*|\w*\d\w*)", question)
    return {w.lower() for w in found} - STOPWORDS


def answerability(passages: list[Passage], question: str) -> float:
    """How well the top passage answers ``question``; "not in the articles" below a threshold.

    The weighted sum of ``answer_features`` (weights: ``ANSWERABILITY``); 0 with no passage.
    """
    features = answer_features(passages, question)
    return sum(ANSWERABILITY[name] * value for name, value in features.items())


def not_in_articles(passages: list[Passage], settings: Settings, question: str = "") -> bool:
    """Whether to say that nothing in the articles answers ``question`` (``Library.not_in_articles``
    marks the top passage's answering sentence first when it has none).

    True when nothing was found or ``answerability`` is below ``settings.no_answer_threshold``.
    """
    return not passages or answerability(passages, question) < settings.no_answer_threshold


def forget_sentences() -> None:
    """Empty the sentence-vector cache (to time cold questions)."""
    with _CACHE_LOCK:
        _CACHE.clear()


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


def _overlap(question: str, sentence: str) -> float:
    """The share of the question's terms (stopwords aside) found in ``sentence``.

    >>> _overlap("Who won the cup?", "Ann won it.")
    0.5
    """
    return _share(terms(question), words(sentence))


def _share(asked: set[str], said: set[str], idf: dict[str, float] | None = None) -> float:
    """The share of the terms ``asked`` among the words ``said``, each term weighted by ``idf`` when given."""
    if idf is None:
        return len(asked & said) / len(asked) if asked else 0.0
    total = sum(idf[w] for w in asked)
    return sum(idf[w] for w in asked & said) / total if total else 0.0


def _found(asked: set[str], said: set[str]) -> float:
    """The share of the words ``asked`` among ``said``; 1 when nothing is asked.

    >>> _found({"ann", "2003"}, {"ann", "won"}), _found(set(), {"ann"})
    (0.5, 1.0)
    """
    return len(asked & said) / len(asked) if asked else 1.0


def _local_idf(asked: set[str], sentences: list[set[str]]) -> dict[str, float]:
    """``log(1 + n / (1 + df))`` of each term over ``sentences`` (n sets of words).

    Weighting the overlap this way lifted hit@1 and the answer sentence on SQuAD v1.1 dev
    (docs/benchmarks.md, "Tuning notes").
    """
    return {w: float(np.log(1 + len(sentences) / (1 + sum(w in x for x in sentences)))) for w in asked}
