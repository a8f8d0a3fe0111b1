"""Question to ranked Passages: the checks of a question, and the pipeline from candidates to answering sentences."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import answering, retrieval
from .config import Settings
from .errors import QuestionError, quoted
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
    store: Store, embedder, question: str, k: int, settings: Settings, highlight: bool = False
) -> list[Passage]:
    """The top ``k`` passages for ``question`` under ``settings.mode``.

    Hybrid mode fuses dense and lexical candidates (``settings.fusion``); then an optional
    cross-encoder (``settings.reranker``) and the answer-sentence stage
    (``settings.answer_candidates``) re-order the best few. Passages that went through
    the answer stage come with their answering sentence marked; with ``highlight`` every
    passage does.
    """
    qvec, ranked = retrieval.candidates(store, embedder, question, max(RETRIEVER_CANDIDATES, 2 * k), settings)
    top = ranked[: max(k, settings.answer_candidates)]
    rows = store.chunks(i for i, _ in top)
    sims = store.vectors(i for i, _ in top) @ qvec if top else []
    passages = [_passage(rows[i], score, float(sim)) for (i, score), sim in zip(top, sims) if i in rows]
    if settings.reranker:
        passages = retrieval.rerank(passages, question, settings)
    if settings.answer_candidates:
        passages = answering.answer_rerank(passages, embedder, question, qvec, settings, store)
    passages = passages[:k]
    return answering.mark_answers(passages, embedder, question, store) if highlight else passages


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
