"""A conversation to an answer: follow-ups searched in context, the answering sentences quoted with citations.

A follow-up such as "What did he say about the cycle of crime?" names nobody; the
turns before it do. So besides the question alone, qa searches the question joined
with each earlier turn (newest first, up to ``CONTEXT_TURNS``), and fuses the rankings
with weights that halve per turn back: the newest question counts most, an older
topic only breaks near-ties. A question that stands on its own wins on its own ranking.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from .retrieval import rrf
from .search import Passage, check_question

# Earlier turns that can shape a follow-up, and the weight of each step back.
CONTEXT_TURNS = 2
CONTEXT_DECAY = 0.5
# A passage's similarity through a query with context counts this much towards "relevant enough".
CONTEXT_SIMILARITY = 0.9
# Passages each query contributes before fusion: a follow-up's passage may rank low on the question alone.
PASSAGES_PER_QUERY = 10
# A second quote only when its sentence is nearly as close to the question as the first.
SECOND_QUOTE_MARGIN = 0.05


@dataclass(frozen=True)
class Quote:
    """An answering sentence and the number of the passage it comes from (1-based)."""

    text: str
    citation: int


@dataclass(frozen=True)
class Answer:
    """What one turn of the chat found.

    ``relevant`` is False when even the best passage is less similar to the question
    than ``min_similarity``: then ``quotes`` is empty and the passages are only the closest.
    """

    question: str
    passages: tuple[Passage, ...]
    quotes: tuple[Quote, ...]
    relevant: bool
    queries: tuple[str, ...]
    min_similarity: float


def ask(library, question: str, history: Iterable = (), k: int = 5, min_similarity: float | None = None) -> Answer:
    """Answer ``question`` in the context of ``history`` (Gradio messages or plain strings).

    Args:
        library: an open ``qa.Library``.
        question: the newest question; at most ``qa.search.MAX_QUESTION_CHARS`` of it are searched.
        history: earlier turns, oldest first: ``{"role", "content"}`` dicts (content a string
            or a list of ``{"type": "text", "text": ...}`` blocks) or strings (taken as user turns).
        k: how many passages to return.
        min_similarity: below this cosine the best passage is not an answer
            (default: ``library.settings.min_similarity``).

    Returns:
        An ``Answer``. Raises ``QuestionError`` for an empty question.
    """
    question = check_question(message_text(question))
    if min_similarity is None:
        min_similarity = library.settings.min_similarity
    queries = contextual_queries(question, context(history))
    rankings = [library.search(q, k=max(k, PASSAGES_PER_QUERY), highlight=True) for q, _ in queries]
    passages = merge(rankings, [w for _, w in queries])[:k]
    relevant = bool(passages) and passages[0].similarity >= min_similarity
    quotes = pick_quotes(library.embedder, question, passages) if relevant else ()
    return Answer(question, tuple(passages), quotes, relevant, tuple(q for q, _ in queries), min_similarity)


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


def context(history: Iterable) -> list[str]:
    """Earlier turns as plain text, newest first: each user question with the reply's quotes.

    >>> context(["Who went?", {"role": "assistant", "content": "> Blinken went\\\\. \\\\[1\\\\]"}])
    ['Who went? Blinken went.']
    """
    turns: list[str] = []
    for message in history:
        if isinstance(message, str):
            role, content = "user", message
        elif isinstance(message, dict):
            role, content = message.get("role", "user"), message.get("content")
        else:  # gradio's ChatMessage and the like
            role, content = getattr(message, "role", "user"), getattr(message, "content", "")
        text = message_text(content)
        if role == "user" and text.strip():
            turns.append(plain(text))
        elif role == "assistant" and turns and (quoted := quotes_of(text)):
            turns[-1] = f"{turns[-1]} {quoted}"
    return turns[::-1]


def quotes_of(reply: str) -> str:
    """The quoted sentences of a reply written by ``qa.render.reply_markdown``, as plain text."""
    lines = [line[2:] for line in reply.splitlines() if line.startswith("> ")]
    return plain(re.sub(r"\\\[\d+\\\]", "", " ".join(lines)))


def plain(markdown: str) -> str:
    """Escaped Markdown back to the text it shows, on one line.

    >>> plain("U.S. \\\\$99 &lt;b&gt;")
    'U.S. $99 <b>'
    """
    return " ".join(html.unescape(re.sub(r"\\(.)", r"\1", markdown)).split())
