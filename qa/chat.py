"""A conversation to an answer: follow-ups searched in context, the answering sentences quoted with citations.

A follow-up such as "What did he say about the cycle of crime?" names nobody; the
turns before it do. So besides the question alone, qa searches the question joined
with each earlier turn (newest first, up to ``CONTEXT_TURNS``), and fuses the rankings
with weights that halve per turn back: the newest question counts most, an older
topic only breaks near-ties. A question that stands on its own wins on its own ranking.

The conversation is kept as data (``Turn``: the question and the sentences its answer quoted),
never read back from the rendered reply:

    >>> first = ask(library, "Who traveled to Mexico City?")                        # doctest: +SKIP
    >>> ask(library, "What did he say about the cycle of crime?", [first.turn])     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from . import answering, filters
from .filters import Filter
from .retrieval import rrf
from .search import MAX_QUESTION_CHARS, Passage, check_question, merge_overlaps

# Earlier turns that can shape a follow-up, and the weight of each step back.
CONTEXT_TURNS = 2
CONTEXT_DECAY = 0.5
# A passage's similarity through a query with context is shown discounted this much.
CONTEXT_SIMILARITY = 0.9
# A query joined with earlier turns must clear "not in the articles" by this much more (answering.answerability):
# with 0 to 0.1, all 16 conversations of tests/multiturn.json were answered and 54 of 60 off-topic follow-ups
# refused (docs/benchmarks.md, "Tuning notes"); with 0.2, one conversation was refused.
CONTEXT_MARGIN = 0.1
# Passages each query contributes before fusion: a follow-up's passage may rank low on the question alone.
PASSAGES_PER_QUERY = 10
# The newest question keeps half of what a search reads: the other half is for the earlier turns joined to it.
NEWEST_QUESTION_CHARS = MAX_QUESTION_CHARS // 2
# A second quote only when its sentence is nearly as close to the question as the first.
SECOND_QUOTE_MARGIN = 0.05


@dataclass(frozen=True)
class Quote:
    """An answering sentence and the number of the passage it comes from (1-based)."""

    text: str
    citation: int


@dataclass(frozen=True)
class Turn:
    """One question of a conversation and what its answer quoted: what a follow-up reads."""

    question: str
    quotes: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The question and its answer's quotes on one line, as joined to a follow-up.

        >>> Turn("Who went?", ("Blinken went.",)).text
        'Who went? Blinken went.'
        """
        return " ".join(" ".join((self.question, *self.quotes)).split())


@dataclass(frozen=True)
class Answer:
    """What one turn of the chat found.

    ``relevant`` is False when nothing in the articles answers the question (``Library.not_in_articles``,
    the rule of every interface): then ``quotes`` is empty and the passages are only the closest.
    """

    question: str
    passages: tuple[Passage, ...]
    quotes: tuple[Quote, ...]
    relevant: bool
    queries: tuple[str, ...]

    @property
    def turn(self) -> Turn:
        """This question and answer as a turn of the conversation, for the questions after it."""
        return Turn(self.question, tuple(q.text for q in self.quotes))


def ask(
    library,
    question: str,
    turns: Sequence[Turn] = (),
    k: int = 5,
    where: Filter = filters.NONE,
) -> Answer:
    """Answer ``question`` in the context of the conversation's earlier ``turns``.

    Args:
        library: an open ``qa.Library``.
        question: the newest question (a string, or chat message content: see ``message_text``);
            at most ``NEWEST_QUESTION_CHARS`` of it are searched, so that the earlier turns joined to it
            still fit in what a search reads (``qa.search.MAX_QUESTION_CHARS``).
        turns: the earlier turns, oldest first: each earlier answer's ``turn``.
        k: how many passages to return.
        where: search only the articles this filter lets through (``qa.filters``).

    Returns:
        An ``Answer``. Raises ``QuestionError`` for an empty question.
    """
    question = check_question(message_text(question))[:NEWEST_QUESTION_CHARS]
    queries = contextual_queries(question, context(turns))
    # Chunks as ranked: the fusion matches them by chunk id; overlapping ones are merged once fused.
    n = max(k, PASSAGES_PER_QUERY)
    rankings = [library.search(q, k=n, highlight=True, where=where, merge=False) for q, _ in queries]
    passages = merge_overlaps(merge(rankings, [w for _, w in queries]), k)
    relevant = bool(passages) and answered(library, passages[0], queries, rankings)
    quotes = pick_quotes(library.embedder, question, passages) if relevant else ()
    return Answer(question, tuple(passages), quotes, relevant, tuple(q for q, _ in queries))


def answered(
    library, top: Passage, queries: Sequence[tuple[str, float]], rankings: Sequence[Sequence[Passage]]
) -> bool:
    """Whether ``top`` answers the newest question in its conversation: "not in the articles" (the rule of every
    interface) judged with each query whose ranking holds ``top``, and one that finds it an answer is enough.

    The question alone is judged as the JSON route and `qa search` judge it (the first question of a
    conversation gets their decision). A query joined with earlier turns must clear the bar by
    ``CONTEXT_MARGIN`` more: the turns' quotes match their own passages. So "What did he say about
    the cycle of crime?" after "Who traveled to Mexico City?" is answered, and "Who painted the Mona Lisa?"
    after it is not.
    """
    settings = library.settings
    raised = settings.with_(no_answer_threshold=settings.no_answer_threshold + CONTEXT_MARGIN)
    for n, ((query, _), ranking) in enumerate(zip(queries, rankings, strict=True)):
        found = [p for p in ranking if p.chunk_id == top.chunk_id][:1]
        if found and not (
            library.not_in_articles(query, found) if n == 0 else answering.not_in_articles(found, raised, query)
        ):
            return True
    return False


def contextual_queries(question: str, earlier: Sequence[str]) -> list[tuple[str, float]]:
    """The question alone (weight 1), then joined with each earlier turn, newest first.

    >>> for query, weight in contextual_queries("What did he say?", ["Who went to Mexico?", "Hi"]):
    ...     print(weight, query)
    1.0 What did he say?
    0.5 What did he say? Who went to Mexico?
    0.25 What did he say? Who went to Mexico? Hi
    """
    queries, joined, weight = [(question, 1.0)], question, 1.0
    for turn in earlier[:CONTEXT_TURNS]:
        joined, weight = f"{joined} {turn}", weight * CONTEXT_DECAY
        queries.append((joined, weight))
    return queries


def merge(rankings: Sequence[Sequence[Passage]], weights: Sequence[float], rrf_k: int = 10) -> list[Passage]:
    """Weighted reciprocal-rank fusion of several rankings of passages.

    A passage keeps the highlight of the first (most weighted) ranking it is in, and
    the highest similarity it had to any query, so a follow-up that names nobody is
    judged by the query that gave it context.
    """
    fused = rrf([[p.chunk_id for p in ranking] for ranking in rankings], weights, rrf_k)
    best: dict[int, Passage] = {}
    sims: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for p in ranking:
            best.setdefault(p.chunk_id, p)
            sims[p.chunk_id] = max(sims.get(p.chunk_id, -1.0), p.similarity * _similarity_weight(weight))
    total = sum(weights)
    return [_with(best[i], round(score / total, 6), round(sims[i], 6)) for i, score in fused]


def _similarity_weight(weight: float) -> float:
    """Context lifts a follow-up's similarity, discounted: the earlier turns' quotes match their own passages."""
    return 1.0 if weight >= 1.0 else CONTEXT_SIMILARITY


def _with(p: Passage, score: float, similarity: float) -> Passage:
    return replace(p, score=score, similarity=similarity)


def pick_quotes(embedder, query: str, passages: Sequence[Passage]) -> tuple[Quote, ...]:
    """The best passage's answering sentence, and a second one from another passage if nearly as close."""
    candidates, seen = [], set()
    for n, p in enumerate(passages, start=1):
        sentence = " ".join(p.highlight.split())
        if sentence and sentence not in seen:
            seen.add(sentence)
            candidates.append(Quote(sentence, n))
    if len(candidates) < 2:
        return tuple(candidates[:1])
    vecs = embedder.encode([query] + [q.text for q in candidates], progress=False)
    scores = vecs[1:] @ vecs[0]
    second = max(range(1, len(candidates)), key=lambda i: scores[i])
    if scores[second] >= scores[0] - SECOND_QUOTE_MARGIN and candidates[second].text not in candidates[0].text:
        return (candidates[0], candidates[second])
    return (candidates[0],)


def message_text(content: object) -> str:
    """The text of a chat message's content: a string, a text block, or a list of blocks.

    >>> message_text([{"type": "text", "text": "Who"}, {"type": "text", "text": "went?"}])
    'Who went?'
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        if "content" in content:
            return message_text(content["content"])
        return content.get("text", "") if isinstance(content.get("text"), str) else ""
    if isinstance(content, (list, tuple)):
        return " ".join(t for t in (message_text(c) for c in content) if t)
    return str(content)


def context(turns: Sequence[Turn]) -> list[str]:
    """Earlier turns as plain text, newest first: each question with its answer's quotes.

    >>> context([Turn("Who went?", ("Blinken went.",)), Turn("When?")])
    ['When?', 'Who went? Blinken went.']
    """
    return [turn.text for turn in reversed(turns)]
