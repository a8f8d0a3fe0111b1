"""Article text to sentence-aware chunks with exact character offsets; pure functions."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Token character spans of each text, special tokens excluded (see Embedder.token_spans).
Tokenize = Callable[[Sequence[str]], list[list[tuple[int, int]]]]


@dataclass(frozen=True)
class Chunk:
    """A run of whole sentences of one article: ``text == article_text[start:end]``."""

    article_id: str
    index: int
    text: str
    start: int
    end: int
    tokens: int


ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt gen col lt sgt capt gov sen rep rev hon pres vs etc e.g i.e no vol "
    "fig inc ltd co corp jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k u.n al approx dept est ft op".split()
)
# A candidate end: terminal punctuation, optional closing quotes/brackets, then whitespace.
_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_WORD_BEFORE = re.compile(r"([\w.]+)$")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences in ``text``; line breaks always end a sentence.

    >>> t = "Dr. Smith met Mr. Jones in the U.S. today. They talked.\\nDone"
    >>> [t[s:e] for s, e in split_sentences(t)]
    ['Dr. Smith met Mr. Jones in the U.S. today.', 'They talked.', 'Done']
    """
    spans = []
    for line in re.finditer(r"[^\n]+", text):
        start = line.start()
        for m in _END.finditer(line.group()):
            end = line.start() + m.end()
            if _is_boundary(text, end, m.group()):
                spans.append(_strip(text, start, end))
                start = end
        spans.append(_strip(text, start, line.end()))
    return [s for s in spans if s[1] > s[0]]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``split_sentences``, or the whole text as one span when it has none: the sentences the
    build keeps a vector for, and the ones the answer stage scores.

    >>> sentence_spans("   ")
    [(0, 3)]
    """
    return split_sentences(text) or [(0, len(text))]


def _is_boundary(text: str, end: int, punct: str) -> bool:
    nxt = re.match(r"\s+(\S)", text[end : end + 8])
    if not nxt:
        return True
    following = nxt.group(1)
    if following.islower() or following in ",;:":
        return False
    if punct[0] != ".":
        return True
    word = _WORD_BEFORE.search(text[max(0, end - 20) : end - len(punct)])
    word = word.group(1).lower() if word else ""
    if word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
        # "U.S. officials" is one sentence, but "...in the U.S. Then" ends one: guess by case.
        return word in {"u.s", "u.k", "etc"} and following.isupper() and _starts_sentence(text, end)
    return True


def _starts_sentence(text: str, end: int) -> bool:
    word = re.match(r"\s+(\w+)", text[end : end + 30])
    return bool(word) and word.group(1) in {"The", "It", "He", "She", "They", "We", "This", "But", "In", "A"}


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def chunk(article_id: str, text: str, tokenize: Tokenize, budget: int = 128, overlap: int = 1) -> list[Chunk]:
    """Split ``text`` into chunks of whole sentences of at most ``budget`` tokens.

    Consecutive chunks share up to ``overlap`` whole sentences. A sentence longer
    than the budget is cut at token boundaries into pieces that fit.
    """
    pieces = _pieces(text, tokenize, budget)
    chunks: list[Chunk] = []
    i = 0
    while i < len(pieces):
        j, used = i, 0
        while j < len(pieces) and (j == i or used + pieces[j][2] <= budget):
            used += pieces[j][2]
            j += 1
        start, end = pieces[i][0], pieces[j - 1][1]
        chunks.append(Chunk(article_id, len(chunks), text[start:end], start, end, used))
        if j == len(pieces):
            break
        i = _next_start(pieces, i, j, budget, overlap)
    return chunks


def _next_start(pieces: list[tuple[int, int, int]], i: int, j: int, budget: int, overlap: int) -> int:
    """Back up ``overlap`` sentences from ``j``, but only as far as still leaves room for piece ``j``."""
    nxt = max(i + 1, j - overlap)
    while nxt < j and sum(p[2] for p in pieces[nxt : j + 1]) > budget:
        nxt += 1
    return nxt


def _pieces(text: str, tokenize: Tokenize, budget: int) -> list[tuple[int, int, int]]:
    """(start, end, tokens) of each sentence, long sentences cut into budget-sized pieces."""
    spans = split_sentences(text)
    if not spans:
        return []
    pieces = []
    for (s, e), toks in zip(spans, tokenize([text[s:e] for s, e in spans])):
        if len(toks) <= budget:
            pieces.append((s, e, len(toks)))
            continue
        for k in range(0, len(toks), budget):
            window = toks[k : k + budget]
            ps = s + window[0][0]
            pe = s + toks[k + budget][0] if k + budget < len(toks) else e
            ps, pe = _strip(text, ps, pe)
            pieces.append((ps, pe, len(window)))
    return pieces
