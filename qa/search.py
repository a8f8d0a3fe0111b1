"""Question to ranked Passages: the checks of a question, and the pipeline from candidates to answering sentences."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from . import answering, filters, retrieval
from .config import Settings
from .errors import QuestionError, quoted
from .filters import Filter
from .pdf import page_at
from .store import Store
from .text import normalize

# How many candidates each retriever contributes before fusion, at least.
RETRIEVER_CANDIDATES = 100
# A question is cut here before anything else, and echoed back so; the model reads about 256 tokens of it,
# and a chat follow-up joined with its earlier turns needs room for them too (see chat.NEWEST_QUESTION_CHARS).
MAX_QUESTION_CHARS = 2000
# The most passages one request may ask for, on every interface (the app, HTTP, the CLI).
MAX_K = 50


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk. ``start``/``end`` and ``highlight_*`` are offsets into the article text.

    ``answer_score`` is the cosine of the question and the answering sentence plus the
    share of the question's terms it holds (see ``answering.answer_rerank``): the "not in the
    articles" decision uses it.

    ``page``: for a passage of a PDF, the number of the page its answering sentence is on (where the
    passage starts, when no sentence is marked); None for other formats.
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
    page: int | None = None

    @property
    def highlight(self) -> str:
        """The answering sentence, when one was selected."""
        if self.highlight_start is None:
            return ""
        return self.text[self.highlight_start - self.start : self.highlight_end - self.start]

    def as_dict(self) -> dict:
        """The passage as JSON: its fields and its ``highlight`` sentence (the CLI's and the HTTP routes' shape)."""
        return {**asdict(self), "highlight": self.highlight}


def answer_json(question: str, k: int, passages: list[Passage], not_in_articles: bool) -> dict:
    """A search's answer as JSON, the same from ``qa search --json`` and ``POST /api/search``: the question as
    searched, ``k``, whether nothing in the articles answers it (``Library.not_in_articles``), the passages."""
    return {
        "question": question,
        "k": k,
        "not_in_articles": not_in_articles,
        "passages": [p.as_dict() for p in passages],
    }


def check_question(question: object) -> str:
    """The question as it is searched: normalised (``text.normalize``), whitespace collapsed, cut to
    ``MAX_QUESTION_CHARS``. The one check of a question, for every interface: QuestionError when it is
    empty or not text.

    >>> check_question("  Who  went? ")
    'Who went?'
    >>> check_question("\\ud800 a")
    '\ufffd a'
    """
    if question is not None and not isinstance(question, str):
        raise QuestionError(f"The question must be text, not {type(question).__name__}.")
    question = " ".join(normalize(question or "").split())
    if not question:
        raise QuestionError('The question is empty. Ask a non-empty question, e.g. "Who traveled to Mexico City?".')
    return question[:MAX_QUESTION_CHARS]


def check_k(k: object, most: int | None = MAX_K) -> int:
    """``k``, the number of passages asked for, if it is a whole number from 1 to ``most`` (None: no upper
    bound); else QuestionError.

    The one rule for every interface (the app, HTTP and the CLI cap it at ``MAX_K``; ``Library.search`` caps it
    at the index's size instead). A whole float (a slider's 5.0) is that number; "5" and 2.7 are not.

    >>> check_k(3), check_k(5.0), check_k(1000, most=None)
    (3, 5, 1000)
    """
    if isinstance(k, float) and k.is_integer():
        k = int(k)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or (most is not None and k > most):
        bound = f"from 1 to {most}" if most is not None else "1 or more"
        raise QuestionError(f'"k" must be a whole number {bound}, got {quoted(k)}.')
    return k


def retrieve(
    store: Store,
    embedder,
    question: str,
    k: int,
    settings: Settings,
    highlight: bool = False,
    where: Filter = filters.NONE,
    merge: bool = True,
) -> list[Passage]:
    """The top ``k`` passages for ``question`` under ``settings.mode``.

    Hybrid mode fuses dense and lexical candidates (``settings.fusion``); then an optional
    cross-encoder (``settings.reranker``) and the answer-sentence stage
    (``settings.answer_candidates``) re-order the best few. Passages that went through
    the answer stage come with their answering sentence marked; with ``highlight`` every
    passage does. Only passages that ``where`` lets through are searched. With ``merge``, overlapping
    passages of one article are one (``merge_overlaps``); without, each is a chunk as ranked, as a fusion
    of several rankings by chunk id needs (``chat.ask``).
    """
    n = max(RETRIEVER_CANDIDATES, 2 * k)
    qvec, ranked = retrieval.candidates(store, embedder, question, n, settings, where)
    n = max(k, settings.answer_candidates)
    pages: dict[str, set[tuple[int, int]]] = {}  # a PDF's (page number, start) pairs that these chunks need
    passages = _passages(store, ranked[:n], qvec, pages)
    if settings.reranker:
        passages = retrieval.rerank(passages, question, settings)
    if settings.answer_candidates:
        passages = answering.answer_rerank(passages, embedder, question, qvec, settings, store)
    passages, shown = merge_overlaps(passages, k) if merge else passages[:k], passages
    while merge and len(passages) < k and n < len(ranked):  # merging left room: the next candidates fill it
        shown, n = shown + _passages(store, ranked[n : n + k], qvec, pages), n + k
        passages = merge_overlaps(shown, k)
    passages = answering.mark_answers(passages, embedder, question, store) if highlight else passages
    return [_on_page(p, sorted(pages.get(p.article_id, ()))) for p in passages]


def _on_page(passage: Passage, pages: list[tuple[int, int]]) -> Passage:
    """``passage`` with the page of its answering sentence, or of its start (see ``Passage``)."""
    at = passage.start if passage.highlight_start is None else passage.highlight_start
    return replace(passage, page=page_at(pages, at)) if pages else passage


def merge_overlaps(passages: list[Passage], k: int | None = None) -> list[Passage]:
    """Up to ``k`` (None: all) distinct ``passages``: of the first ``k``, each one that overlaps a better
    passage of its article is merged into it; a later one that overlaps a kept passage is left out, so
    that it can't join shown passages into one (each spans at most ``k`` chunks) and ``k`` distinct
    passages come back whenever they exist.

    Consecutive chunks share a sentence (``overlap_sentences``), so two hits of one article can show the
    same text twice. The better one (earlier in the list) keeps its place, score and answering sentence;
    its span grows to cover both, its similarity is the higher of the two.

    >>> a = Passage("One. Two.", 2.0, "x", "", "", "", "", 0, 9, 1, similarity=0.5)
    >>> b = Passage("Two. Three.", 1.0, "x", "", "", "", "", 5, 16, 2, similarity=0.7)
    >>> [(p.text, p.start, p.end, p.chunk_id, p.similarity) for p in merge_overlaps([a, b])]
    [('One. Two. Three.', 0, 16, 1, 0.7)]
    """
    kept: list[Passage] = []
    for rank, p in enumerate(passages):
        if k is not None and len(kept) >= k:
            break
        if k is not None and rank >= k and any(_overlap(q, p) for q in kept):
            continue
        kept.append(p)
        n = len(kept) - 1
        # A passage that grew may now reach another: merge until none overlaps it.
        while (m := next((m for m, q in enumerate(kept) if m != n and _overlap(q, kept[n])), None)) is not None:
            n, gone = min(n, m), max(n, m)
            kept[n] = _joined(kept[n], kept.pop(gone))
    return kept


def _overlap(p: Passage, q: Passage) -> bool:
    return p.article_id == q.article_id and p.start < q.end and q.start < p.end


def _joined(better: Passage, other: Passage) -> Passage:
    """``better`` spanning ``other`` too: their texts are slices of one article that overlap."""
    start, end = min(better.start, other.start), max(better.end, other.end)
    text = better.text
    if other.start < better.start:
        text = other.text[: better.start - other.start] + text
    if other.end > better.end:
        text = text + other.text[len(other.text) - (other.end - better.end) :]
    return replace(better, text=text, start=start, end=end, similarity=max(better.similarity, other.similarity))


def _passages(store: Store, ranked: list[tuple[int, float]], qvec, pages: dict) -> list[Passage]:
    """Passages of the (chunk id, score) candidates ``ranked``, with their cosine to the question; the page
    starts their chunks span are added to ``pages`` (article id -> pairs), for passages merged of several."""
    rows = store.chunks(i for i, _ in ranked)
    for row in rows.values():
        if row.pages:
            pages.setdefault(row.article_id, set()).update(row.pages)
    sims = store.vectors(i for i, _ in ranked) @ qvec if ranked else []
    return [_passage(rows[i], score, float(sim)) for (i, score), sim in zip(ranked, sims) if i in rows]


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
