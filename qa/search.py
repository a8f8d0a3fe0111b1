"""Question to ranked Passages: dense and lexical retrieval, fused; the answering sentence picked."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from .chunking import split_sentences
from .config import Settings
from .store import STOPWORDS, Store

# How many candidates each retriever contributes before fusion, at least.
CANDIDATES = 50
MAX_QUESTION_CHARS = 2000


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk. ``start``/``end`` and ``highlight_*`` are offsets into the article text."""

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

    @property
    def highlight(self) -> str:
        """The answering sentence, when one was selected."""
        if self.highlight_start is None:
            return ""
        return self.text[self.highlight_start - self.start:self.highlight_end - self.start]


def retrieve(store: Store, embedder, question: str, k: int, settings: Settings) -> list[Passage]:
    """The top ``k`` passages for ``question`` under ``settings.mode``."""
    question = question[:MAX_QUESTION_CHARS]
    n = max(CANDIDATES, 2 * k)
    qvec = embedder.encode([question], progress=False)[0]
    dense = store.dense(qvec, n) if settings.mode != "lexical" else []
    lexical = store.lexical(question, n) if settings.mode != "dense" else []
    if settings.mode == "dense":
        ranked = dense[:k]
    elif settings.mode == "lexical":
        ranked = lexical[:k]
    else:
        ranked = fuse(dense, lexical, settings.dense_weight, settings.rrf_k)[:k]
    rows = store.chunks(i for i, _ in ranked)
    sims = store.vectors(i for i, _ in ranked) @ qvec if ranked else []
    return [_passage(rows[i], score, float(sim)) for (i, score), sim in zip(ranked, sims) if i in rows]


def fuse(dense: list[tuple[int, float]], lexical: list[tuple[int, float]], dense_weight: float = 0.5,
         rrf_k: int = 60) -> list[tuple[int, float]]:
    """Weighted reciprocal-rank fusion, scaled so rank 1 in both lists scores 1.0.

    >>> fuse([(1, .9), (2, .8)], [(2, 7.0), (3, 5.0)])[0][0]
    2
    """
    scores: dict[int, float] = {}
    for weight, ranking in ((dense_weight, dense), (1 - dense_weight, lexical)):
        for rank, (i, _) in enumerate(ranking):
            scores[i] = scores.get(i, 0.0) + weight * (rrf_k + 1) / (rrf_k + rank + 1)
    return sorted(scores.items(), key=lambda item: -item[1])


def highlight(passages: list[Passage], embedder, question: str) -> list[Passage]:
    """Each passage with its best answering sentence marked (cosine plus a little term overlap)."""
    spans = [[(p.start + s, p.start + e) for s, e in split_sentences(p.text)] or [(p.start, p.end)]
             for p in passages]
    texts = [p.text[s - p.start:e - p.start] for p, ss in zip(passages, spans) for s, e in ss]
    if not texts:
        return passages
    vecs = embedder.encode([question[:MAX_QUESTION_CHARS]] + texts, progress=False)
    scores = vecs[1:] @ vecs[0] + 0.1 * np.array([_overlap(question, t) for t in texts])
    out, offset = [], 0
    for p, ss in zip(passages, spans):
        best = int(np.argmax(scores[offset:offset + len(ss)]))
        offset += len(ss)
        out.append(replace(p, highlight_start=ss[best][0], highlight_end=ss[best][1]))
    return out


def _overlap(question: str, sentence: str) -> float:
    q = {w for w in re.findall(r"\w+", question.lower()) if w not in STOPWORDS}
    s = set(re.findall(r"\w+", sentence.lower()))
    return len(q & s) / len(q) if q else 0.0


def _passage(row, score: float, similarity: float) -> Passage:
    return Passage(text=row.text, score=round(score, 6), article_id=row.article_id, title=row.title,
                   source=row.source, date=row.date, url=row.url, start=row.start, end=row.end,
                   chunk_id=row.id, similarity=round(similarity, 6))

