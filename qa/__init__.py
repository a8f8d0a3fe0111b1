"""qa: chat-style question answering over a collection of articles."""

from .articles import Article
from .config import Settings
from .errors import (
    ArticleError,
    CorruptIndexError,
    FilterError,
    GenerationError,
    HandOffError,
    IndexLockedError,
    IndexMismatchError,
    ModelError,
    NoArticlesError,
    NoIndexError,
    NoSourcesError,
    NoSuchArticleError,
    QAError,
    QuestionError,
    StoreError,
    UploadError,
)
from .indexer import BuildReport
from .library import IndexInfo, Library
from .search import Passage

__all__ = [
    "Article",
    "ArticleError",
    "BuildReport",
    "CorruptIndexError",
    "FilterError",
    "GenerationError",
    "HandOffError",
    "IndexInfo",
    "IndexLockedError",
    "IndexMismatchError",
    "Library",
    "ModelError",
    "NoArticlesError",
    "NoIndexError",
    "NoSourcesError",
    "NoSuchArticleError",
    "Passage",
    "QAError",
    "QuestionError",
    "Settings",
    "StoreError",
    "UploadError",
]
