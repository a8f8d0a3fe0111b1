"""Errors that qa raises, each with a message that says what to do next.

QAError
├── ArticleError        an article or collection can't be read
│   ├── NoArticlesError no readable articles in the given paths
│   └── UploadError     an uploaded file or pasted text was refused
├── ModelError          the embedding model can't be loaded
├── StoreError         problems with the index directory
│   ├── NoIndexError        nothing built at that directory yet
│   ├── IndexMismatchError  built with another model or format version
│   ├── CorruptIndexError   files truncated, missing or unreadable
│   └── IndexLockedError    another build holds the lock
├── QuestionError       empty or unusable question
└── HandOffError        the app serving the index can't take a `qa build`
"""


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


class IndexMismatchError(StoreError):
    """The index was built with another model, settings or format version."""


class CorruptIndexError(StoreError):
    """An index file is missing, truncated or unreadable."""


class IndexLockedError(StoreError):
    """Another build of the same index is running."""


class QuestionError(QAError):
    """The question is empty or otherwise unusable."""


class HandOffError(QAError):
    """The app serving the index can't take a build; `qa build` builds by itself. The message says why."""
