"""Errors that qa raises, each with a message that says what to do next.

QAError
├── ArticleError        an article or collection can't be read
│   ├── NoArticlesError no readable articles in the given paths
│   └── UploadError     an uploaded file or pasted text was refused
├── ModelError          the embedding model can't be loaded
├── StoreError         problems with the index directory
│   ├── NoIndexError        nothing built at that directory yet
│   ├── NoSourcesError      the index records no folders to update or add from
│   ├── IndexMismatchError  built with another model or format version
│   ├── CorruptIndexError   files truncated, missing or unreadable
│   └── IndexLockedError    another build holds the lock
├── QuestionError       empty or unusable question
├── HandOffError        the app serving the index can't take a `qa build`
└── GenerationError     the answer model's server failed (the chat keeps its quotes and says why)

A message that quotes a refused value quotes it through ``quoted``: cut, never echoed whole.
"""

import reprlib

# A refused value is quoted in at most this many characters (a 60 KB "k" once made a 60 KB error).
MAX_QUOTED_CHARS = 200
_QUOTED = reprlib.Repr()
_QUOTED.maxstring = _QUOTED.maxother = 120
_QUOTED.maxlong = 40


def quoted(value: object) -> str:
    """``value`` as an error message quotes it: its repr, cut in the middle when long, and at most
    ``MAX_QUOTED_CHARS`` in all (a nest of long strings too).

    >>> quoted("other-model")
    "'other-model'"
    >>> len(quoted(10**4000)) <= 40
    True
    """
    text = _QUOTED.repr(value)
    return text if len(text) <= MAX_QUOTED_CHARS else text[: MAX_QUOTED_CHARS - 1] + "…"


class QAError(Exception):
    """Base class of every error qa raises on purpose."""


class ArticleError(QAError):
    """An article file or record could not be read."""


class NoArticlesError(ArticleError):
    """The given paths hold no readable article."""


class UploadError(ArticleError):
    """An uploaded file or pasted text was refused (unsupported, too big, unreadable, empty)."""


class ModelError(QAError):
    """The embedding model could not be loaded."""


class StoreError(QAError):
    """Base class of problems with the index directory."""


class NoIndexError(StoreError):
    """No index has been built at the directory yet."""


class NoSourcesError(StoreError):
    """The index records no folders it was built from, so it can't be updated or added to from them."""


class IndexMismatchError(StoreError):
    """The index was built with another model, settings or format version."""


class CorruptIndexError(StoreError):
    """An index file is missing, truncated or unreadable."""


class IndexLockedError(StoreError):
    """Another build of the same index is running."""


class QuestionError(QAError):
    """The question is empty or otherwise unusable."""


class FilterError(QuestionError):
    """A search's filter is malformed or names what the index lacks (a source, an article)."""


class NoSuchArticleError(FilterError):
    """No indexed article has the id or the title words that an article filter names."""


class HandOffError(QAError):
    """The app serving the index can't take a build; `qa build` builds by itself. The message says why."""


class GenerationError(QAError):
    """The server of QA_LLM_URL could not write an answer (down, slow, or not OpenAI-style). The message says why."""
