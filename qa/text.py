"""Text as qa sees it: normalised (encodable, NFC), lower-case words, terms (stopwords aside), the FTS5 query."""

from __future__ import annotations

import re
import unicodedata

# Lone surrogates can't be encoded (the tokenizer refuses them); control characters other than
# tab and line ends are noise that some tools choke on.
_UNENCODABLE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def normalize(text: str) -> str:
    """Text that every later stage can encode: lone surrogates become U+FFFD, control characters
    (but tabs and line ends) are dropped, and the result is in Unicode normal form NFC.

    >>> normalize("x \\ud800 y\\x07") == "x \\ufffd y"
    True
    >>> normalize("Cafe\\u0301") == "Caf\\u00e9"
    True
    """
    return unicodedata.normalize("NFC", _CONTROL.sub("", _UNENCODABLE.sub("\ufffd", text)))


STOPWORDS = frozenset(
    "a an the and or but if of at by for with about against between into through during before after "
    "above below to from up down in out on off over under again then once here there when where why how "
    "all any both each few more most other some such no nor not only own same so than too very can will "
    "just should now is are was were be been being have has had having do does did doing i me my we our "
    "you your he him his she her it its they them their what which who whom this that these those am".split()
)


def words(text: str) -> set[str]:
    """The distinct lower-case words of ``text``.

    >>> sorted(words("Ann won, ann lost."))
    ['ann', 'lost', 'won']
    """
    return set(re.findall(r"\w+", text.lower()))


def terms(text: str) -> set[str]:
    """The words of ``text`` that say something: ``words`` less ``STOPWORDS``.

    >>> sorted(terms("Who won the cup?"))
    ['cup', 'won']
    """
    return words(text) - STOPWORDS


def fts_query(question: str, max_terms: int = 64) -> str:
    """An FTS5 OR-query of the question's distinct non-stopword terms, in their order.

    >>> fts_query("What is the Merida Initiative?")
    '"merida" OR "initiative"'
    """
    return " OR ".join(f'"{t}"' for t in query_terms(question, max_terms))


def query_terms(question: str, max_terms: int = 64) -> list[str]:
    """The question's distinct non-stopword words, lower-cased, in their order: what full-text search looks for.

    >>> query_terms("What is the Merida Initiative?")
    ['merida', 'initiative']
    """
    found: list[str] = []
    for word in re.findall(r"\w+", question.lower()):
        if word not in STOPWORDS and word not in found:
            found.append(word)
    return found[:max_terms]
