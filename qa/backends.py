"""Where an index lives: the local index directory (FAISS and SQLite, ``qa.store``) or a Milvus
collection (``qa.milvus``). Builds and searches reach an index only through a ``Backend`` and the
``Index`` generations it opens; ``of`` is the one place that picks which.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from .config import Settings
    from .filters import Filter
    from .store import ChunkRow

BACKENDS = ("local", "milvus")


class Index(Protocol):
    """A read-only view of one generation of an index: what a search and a build read. Thread-safe."""

    generation: str  # names this generation among the backend's: what ``Backend.live`` compares
    manifest: dict  # model, dim, chunk settings, counts ("articles", "chunks"), sources, built_at

    # ``where``: only chunks of the articles it lets through (``qa.filters``), searched inside the index.
    def dense(
        self, vector: np.ndarray, k: int, exact: bool = False, where: Filter = ...
    ) -> list[tuple[int, float]]: ...
    def lexical(self, query: str, k: int, where: Filter = ...) -> list[tuple[int, float]]: ...
    def sources(self) -> list[str]: ...  # the sources its articles name, sorted
    def has_article(self, article: str) -> bool: ...  # an article with this id, or all these words in its title
    def vectors(self, ids: Iterable[int]) -> np.ndarray: ...
    def sentences(self, ids: Iterable[int]) -> dict[int, tuple[list[tuple[int, int]], np.ndarray]]: ...
    def chunks(self, ids: Iterable[int]) -> dict[int, ChunkRow]: ...
    def chunk_ids(self) -> list[int]: ...
    def article_hashes(self, ids: Sequence[str] | None = None) -> dict[str, str]: ...
    def articles_with_texts(self, texts: Iterable[str]) -> dict[str, list[str]]: ...
    def article_text(self, article_id: str) -> str: ...
    def size(self) -> int: ...
    def check(self) -> list[str]: ...
    def close(self) -> None: ...


class IndexWriter(Protocol):
    """Writes the next generation: ``reuse`` what a killed build embedded, ``remove`` and ``add`` the
    changes, then ``commit`` (readers see all of it or none) or ``abort``."""

    manifest: dict
    reused: int  # chunks taken from a killed build

    def reuse(self, article) -> bool: ...
    def remove(self, article_ids: Iterable[str]) -> None: ...
    def add(self, article, chunks, vectors: np.ndarray, sentences: Sequence | None = None) -> None: ...
    def commit(self) -> object: ...
    def abort(self) -> None: ...


class Backend(Protocol):
    where: str  # what messages call it: "index/", "Milvus collection qa at /data/milvus.db"

    def open(self) -> Index:
        """The live generation. NoIndexError when nothing was built; CorruptIndexError, IndexMismatchError."""
        ...

    def live(self) -> str | None:
        """The live generation's name, cheaply: checked before every search for a rebuild to pick up."""
        ...

    def writer(self, manifest: dict, base: Index | None, dense_index: str) -> IndexWriter:
        """A writer of the next generation; ``base`` None: written from scratch, swapped in whole."""
        ...

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Held by a build: a second one gets IndexLockedError at once."""
        ...


@dataclass(frozen=True)
class Local:
    """The index directory: FAISS segments and one SQLite database (README "How it works")."""

    index_dir: Path

    @property
    def where(self) -> str:
        return f"{self.index_dir}/"

    def open(self) -> Index:
        from .store import Store

        return Store.open(self.index_dir)

    def live(self) -> str | None:
        from .store import current_generation

        return current_generation(self.index_dir)

    def writer(self, manifest: dict, base: Index | None, dense_index: str) -> IndexWriter:
        from .store import Writer

        return Writer(self.index_dir, manifest, base, dense_index)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        from .store import lock

        return lock(self.index_dir)


def identity(settings: Settings) -> str:
    """Which index ``settings`` name, beside their index directory, the same from any working directory:
    a running app takes a `qa build` only into the index it serves."""
    if settings.backend == "milvus":  # without importing qa.milvus: `qa build`'s hand-off stays light
        return f"milvus {milvus_uri(settings)} {settings.milvus_collection}"
    return "local"


def milvus_uri(settings: Settings) -> str:
    """Where ``settings`` put a Milvus index: a server's URI, or Milvus Lite's file as an absolute path
    (one file, one name, from any working directory), by default ``index_dir/milvus.db``."""
    uri = settings.milvus_uri or str(Path(settings.index_dir) / "milvus.db")
    return uri if uri.startswith(("http://", "https://", "tcp://", "unix:")) else str(Path(uri).absolute())


def of(settings: Settings) -> Backend:
    """The backend ``settings`` name (``backend``, with ``milvus_uri`` and the rest for Milvus)."""
    if settings.backend == "milvus":
        from .milvus import Milvus

        return Milvus.of(settings)
    return Local(Path(settings.index_dir))
