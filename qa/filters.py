"""What a search may be limited to: sources, a date range, one article. Checked once, for every interface.

A filter applies inside retrieval (each backend turns it into its own query: SQL for the local index,
a filter expression for Milvus), so a filtered search still finds ``k`` passages when ``k`` exist.

    >>> f = check(source="Wikinews", after="2008", before="2008-06")
    >>> f.sources, f.after, f.before
    (('Wikinews',), '2008-01-01', '2008-06-30')
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

from .errors import FilterError, NoSuchArticleError, quoted

# A date a filter names: a year, a month or a day.
_ASKED = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
# An article's date as articles write it: ISO first ("2021-10-08", "2021-10-08T17:45:00Z", "2021/10/08").
_ISO = re.compile(r"\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_FORMATS = ("%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%d %b %Y", "%B %d %Y", "%b %d %Y", "%b. %d, %Y", "%d.%m.%Y")
# Sources named in the message about one that is unknown.
SHOWN_SOURCES = 20


@dataclass(frozen=True)
class Filter:
    """Passages only from these ``sources`` (any of them; none: every source), of articles dated
    ``after`` to ``before`` (inclusive, YYYY-MM-DD; articles without a readable date are left out
    when either is set), and of the ``article`` whose id this is or whose title holds all its words.
    """

    sources: tuple[str, ...] = ()
    after: str | None = None
    before: str | None = None
    article: str | None = None

    def __bool__(self) -> bool:
        return bool(self.sources or self.after or self.before or self.article)

    @property
    def title_words(self) -> list[str]:
        """The words of ``article`` that a title must hold, each a whole word, in any case (``title_has``).

        >>> Filter(article="Blinken  in MEXICO's").title_words
        ['blinken', 'in', 'mexico', 's']
        """
        return words(self.article or "")


NONE = Filter()


def check(
    source: str | Sequence[str] | None = None,
    after: str | None = None,
    before: str | None = None,
    article: str | None = None,
) -> Filter:
    """The filter these arguments ask for, as every interface gives them (empty values: no filter).

    FilterError, saying what is expected, for a date that is not YYYY, YYYY-MM or YYYY-MM-DD, or a value
    that is not text. A range that ends before it starts is no error: no article is in it.

    >>> check(after="2021-10-08").after
    '2021-10-08'
    >>> check(before="2020-02").before
    '2020-02-29'
    >>> check(after="yesterday")
    Traceback (most recent call last):
    ...
    qa.errors.FilterError: "after" must be a date as YYYY-MM-DD (or YYYY-MM, or YYYY), got 'yesterday'.
    """
    sources = _sources(source)
    start, end = _day(after, "after", first=True), _day(before, "before", first=False)
    if article is not None and not isinstance(article, str):
        raise FilterError(f'"article" must be text (an article id or words of its title), got {quoted(article)}.')
    return Filter(sources, start, end, " ".join((article or "").split()) or None)


class Catalog(Protocol):
    """What checking a filter against an index needs of it (``qa.backends.Index`` has these)."""

    def sources(self) -> list[str]: ...
    def has_article(self, article: str) -> bool: ...


def validate(f: Filter, index: Catalog) -> Filter:
    """``f`` with its sources spelt as the index spells them; FilterError when a source or the article is
    unknown to the index, saying which there are.

    >>> class Two:
    ...     def sources(self): return ["OAN Newsroom", "Wikinews"]
    ...     def has_article(self, article): return False
    >>> validate(Filter(sources=("wikinews",)), Two()).sources
    ('Wikinews',)
    >>> validate(Filter(sources=("BBC",)), Two())
    Traceback (most recent call last):
    ...
    qa.errors.FilterError: No article has source 'BBC'. The sources are: OAN Newsroom, Wikinews.
    """
    if f.sources:
        known = {s.casefold(): s for s in index.sources()}
        unknown = [s for s in f.sources if s.casefold() not in known]
        if unknown:
            names = sorted(known.values())
            listed = ", ".join(names[:SHOWN_SOURCES])
            if len(names) > SHOWN_SOURCES:
                listed += f" and {len(names) - SHOWN_SOURCES} more"
            raise FilterError(
                f"No article has source {unknown[0]!r}. "
                + (f"The sources are: {listed}." if names else "No article of this index names its source.")
            )
        f = Filter(tuple(dict.fromkeys(known[s.casefold()] for s in f.sources)), f.after, f.before, f.article)
    if f.article and not index.has_article(f.article):
        raise NoSuchArticleError(
            f"No article has the id {f.article!r} or all of its words in its title. "
            "Name an article by its id (as `qa search --json` shows it) or by words of its title."
        )
    return f


def words(text: str) -> list[str]:
    """The words of ``text`` as title filters compare them: runs of letters and digits, casefolded.

    >>> words("Élysée talks: U.S. envoy")
    ['élysée', 'talks', 'u', 's', 'envoy']
    """
    return re.findall(r"\w+", text.casefold())


def title_has(title: str | None, wanted: str) -> bool:
    """Whether ``title`` holds each of the ``wanted`` words (space-separated, as ``words`` gives them) as a
    whole word: "war" is not in "Software award".

    >>> title_has("Apple executive Steve Jobs resigns", "steve jobs"), title_has("Software award", "war")
    (True, False)
    """
    return set(wanted.split()) <= set(words(title or ""))


def title_key(title: str | None) -> str:
    """A title's words as the backends store them for article filters: each between spaces, so that a word
    is found whole (``" jobs "``) by a plain substring search.

    >>> title_key("Apple executive Steve Jobs resigns")
    ' apple executive steve jobs resigns '
    """
    return f" {' '.join(words(title or ''))} "


def day(text: str) -> str | None:
    """An article's date as YYYY-MM-DD, or None when it can't be read as one: what date filters compare.

    >>> [day(d) for d in ("2021-10-08", "2021-10-08T17:45:00Z", "March 06, 2008", "8 Oct 2021", "soon")]
    ['2021-10-08', '2021-10-08', '2008-03-06', '2021-10-08', None]
    >>> day("Tue, 03 Mar 2021 10:00:00 GMT")
    '2021-03-03'
    """
    text = " ".join((text or "").split())
    if not text:
        return None
    if m := _ISO.match(text):
        return _valid(int(m[1]), int(m[2]), int(m[3]))
    for fmt in _FORMATS:
        try:
            return datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    try:
        return parsedate_to_datetime(text).date().isoformat()
    except (TypeError, ValueError, IndexError):
        return None


def _valid(year: int, month: int, dd: int) -> str | None:
    try:
        return date(year, month, dd).isoformat()
    except ValueError:
        return None


def _day(value: object, name: str, first: bool) -> str | None:
    """A filter's date as YYYY-MM-DD: a year or a month stands for its first day (``first``) or its last."""
    if value is None or value == "":
        return None
    m = _ASKED.fullmatch(value.strip()) if isinstance(value, str) else None
    if m:
        year, month = int(m[1]), int(m[2] or (1 if first else 12))
        dd = int(m[3]) if m[3] else (1 if first else calendar.monthrange(year, min(max(month, 1), 12))[1])
        if found := _valid(year, month, dd) if 1 <= month <= 12 else None:
            return found
    raise FilterError(f'"{name}" must be a date as YYYY-MM-DD (or YYYY-MM, or YYYY), got {quoted(value)}.')


def _sources(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) for s in items):
        raise FilterError(f'"source" must be a source\'s name or a list of them, got {quoted(value)}.')
    return tuple(dict.fromkeys(" ".join(s.split()) for s in items if s.strip()))
