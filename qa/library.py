"""Library: the entry class that ties reading, chunking, embedding, storing and searching together."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import answering, backends, filters, indexer
from . import search as search_mod
from .backends import Index
from .config import Settings
from .embedding import Embedding, LazyEmbedder, load_embedder
from .errors import IndexLockedError, IndexMismatchError, NoSourcesError, QAError, StoreError, UploadError
from .filters import Filter
from .indexer import BuildReport
from .search import Passage

if TYPE_CHECKING:
    from .embedding import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexInfo:
    """What ``qa info`` shows."""

    index_dir: str
    model: str
    dim: int
    articles: int
    chunks: int
    bytes: int
    built_at: str
    chunk_tokens: int
    generation: str
    dense: str  # what dense search uses: each kind of segment, e.g. "ivf:nlist=4000,nprobe=32,rescore=100 (1 segment)"


class Library:
    """A searchable collection of articles backed by an index directory.

    >>> lib = Library.build(["seeds/"], index_dir="index/")           # doctest: +SKIP
    >>> lib.search("Who traveled to Mexico City?", k=1)[0].title       # doctest: +SKIP
    'Blinken travels to Mexico City for security talks'

    Searches pick up a rebuilt index by themselves (checked before each search), with the
    model it was built with. Safe to search from several threads.
    """

    def __init__(self, store: Index, embedder, settings: Settings) -> None:
        self.settings = settings
        self._backend = backends.of(settings)
        self._serving = (store, embedder)  # swapped as one, so a search never mixes two models
        self._swap = threading.Lock()
        self._unusable: str | None = None  # a generation that failed to open
        self.last_build: BuildReport | None = None

    @classmethod
    def open(
        cls,
        index_dir: str | os.PathLike | None = None,
        model: str | None = None,
        settings: Settings | None = None,
        embedder=None,
    ) -> Library:
        """Open an existing index. ``model`` defaults to the one it was built with."""
        settings = (settings or Settings.from_env()).with_(index_dir=index_dir)
        store = backends.of(settings).open()
        built_with = store.manifest["model"]
        wanted = model or (embedder.name if embedder else None) or built_with
        embedder = embedder or load_embedder(wanted)
        if embedder.name != built_with or embedder.dim != store.manifest["dim"]:
            raise IndexMismatchError(
                f"{settings.index_dir}/ was built with model {built_with!r}, not {embedder.name!r}. "
                f"Rebuild it with `qa build --full --model {embedder.name} --index {settings.index_dir}`, "
                "or open it without choosing a model."
            )
        return cls(store, embedder, settings.with_(model=built_with))

    @classmethod
    def build(
        cls,
        paths: str | os.PathLike | Sequence[str | os.PathLike] | indexer.Collection = ("seeds",),
        index_dir: str | os.PathLike | None = None,
        model: str | None = None,
        full: bool = False,
        settings: Settings | None = None,
        embedder=None,
        progress: Progress = None,
    ) -> Library:
        """Build (or update incrementally) the index of ``paths`` and open it.

        ``paths``: folders and files to read, or articles already in memory as an ``indexer.Collection``
        (``Collection(articles, [])``: an evaluation's data set; the index then records no source folders).
        ``progress``: a bar on stderr or not (None: on a terminal, for over 256 passages), or a
        function called with (passages embedded, passages) as the embedding goes on.
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        settings = (settings or Settings.from_env()).with_(index_dir=index_dir, model=model)
        collection = (  # read before spending seconds on the model
            paths if isinstance(paths, indexer.Collection) else indexer.collect(paths, backends.of(settings))
        )
        embedder = embedder or LazyEmbedder(settings.model)  # not loaded when nothing needs embedding
        report = indexer.build(collection, settings, embedder, full=full, progress=progress)
        lib = cls(backends.of(settings).open(), embedder, settings)
        lib.last_build = report
        return lib

    def update(
        self,
        paths: Sequence[str | os.PathLike] | None = None,
        settings: Settings | None = None,
        full: bool = False,
        progress: Progress = None,
        wait: float = 0.0,
    ) -> BuildReport:
        """Re-index a collection into this library's index with its loaded model; searches go on
        meanwhile and pick up the result.

        >>> lib.update()                                      # doctest: +SKIP
        BuildReport(added=1, changed=0, removed=0, unchanged=3, ...)

        Args:
            paths: folders and files to index; None: the ones the index records (``update_paths``).
            settings: how to chunk (its ``index_dir`` is this library's); None: as the index was chunked,
                so that adding one article never re-embeds the collection because this process was
                started with other settings.
            full: re-embed every article, even unchanged ones.
            progress: as for ``Library.build``.
            wait: seconds to wait for another build that holds the index's lock (0: don't wait).

        Returns:
            The build's report, also kept as ``last_build``. NoSourcesError when ``paths`` is None and
            the index records none; IndexLockedError when another build still holds the lock.
        """
        if paths is None:
            paths = self.update_paths()
        settings = self._index_settings(settings)
        collection = indexer.collect(paths, backends.of(settings))
        return self._build(collection, settings, full, progress, wait)

    def add(
        self,
        files: Sequence[str | os.PathLike],
        folder: str | os.PathLike | None = None,
        progress: Progress = None,
        wait: float = 0.0,
    ) -> BuildReport:
        """Index ``files``, new or changed articles of the collection, reading only them: the rest of
        the index stays as it is. What the app's "Add articles" panel does after saving them.

        >>> lib.add(["articles/uploads/oil.txt"])             # doctest: +SKIP
        BuildReport(added=1, changed=0, removed=0, unchanged=3, ...)

        The result is what ``update(update_paths(folder))`` would give after the same files were saved
        (the same ids, chunking and report), but nothing is removed: a file that now holds fewer
        articles keeps the others until the next ``update``. An article whose text an indexed one
        already has is skipped ("same text as ..."), even where a full read would meet it first.

        Args:
            files: files inside the folders the index records, or inside ``folder``.
            folder: a folder that joins those the index records unless it is inside one of them
                (``update_paths``).
            progress, wait: as for ``update``.

        Returns:
            The build's report, also kept as ``last_build``: ``unchanged`` counts every other indexed
            article. NoSourcesError when the index records no folders; UploadError when a file is outside them.
        """
        paths = self.update_paths(folder)
        roots = [Path(p).resolve() for p in paths]
        for f in files:
            where = Path(f).absolute().parent.resolve()
            if not any(where.is_relative_to(root) or Path(f).resolve() == root for root in roots):
                raise UploadError(
                    f"{f} is not in a folder that {self.settings.index_dir}/ is built from ({', '.join(paths)}). "
                    "Save it in one of them, or name its folder."
                )
        settings = self._index_settings(None)
        collection = indexer.collect(paths, settings.index_dir, only=files)
        return self._build(collection, settings, False, progress, wait)

    def _index_settings(self, settings: Settings | None) -> Settings:
        """``settings`` (None: this library's, chunking as the index was chunked) for this library's index."""
        if settings is None:
            manifest = self.manifest
            settings = self.settings.with_(
                chunk_tokens=manifest["chunk_tokens"],
                overlap_sentences=manifest.get("overlap_sentences"),
                dense_index=manifest.get("dense_index"),
            )
        return settings.with_(index_dir=self.settings.index_dir)

    def _build(
        self, collection: indexer.Collection, settings: Settings, full: bool, progress: Progress, wait: float
    ) -> BuildReport:
        """``indexer.build`` with this library's model, waiting up to ``wait`` seconds for another build's lock."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self.last_build = indexer.build(collection, settings, self.embedder, full=full, progress=progress)
                return self.last_build
            except IndexLockedError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def update_paths(self, folder: str | os.PathLike | None = None) -> list[str]:
        """The folders and files the index records, plus ``folder`` unless it is inside one of them.

        NoSourcesError, saying how to fix it, when the index records none (built before they were
        recorded): an update from ``folder`` alone would drop every other article.
        """
        paths = self.sources
        if not paths:
            raise NoSourcesError(
                f"{self.settings.index_dir}/ does not record which folders it was built from. "
                "Rebuild it once with `qa build FOLDER...`, then add articles."
            )
        if folder is not None and not any(Path(folder).resolve().is_relative_to(Path(p).resolve()) for p in paths):
            paths.append(str(Path(folder).resolve()))
        return paths

    def search(
        self,
        question: str,
        k: int = 5,
        highlight: bool = False,
        source: str | Sequence[str] | None = None,
        after: str | None = None,
        before: str | None = None,
        article: str | None = None,
        where: Filter | None = None,
        merge: bool = True,
    ) -> list[Passage]:
        """The ``k`` passages that best answer ``question``, best first.

        >>> lib.search("Who met Blinken?", k=3, source="OAN Newsroom", after="2021-10")   # doctest: +SKIP

        Args:
            question: what to search for.
            k: how many passages, capped at the number of chunks.
            highlight: mark each passage's answering sentence (``Passage.highlight``).
            source: only articles of this source (or of any of these), as the articles name it (any case).
            after, before: only articles dated from ``after`` to ``before``, both included: YYYY-MM-DD, or
                YYYY-MM or YYYY for a whole month or year. Articles with no readable date are left out.
            article: only the article with this id, or those with all these words in their title.
            where: the same as one ``qa.filters.Filter`` (instead of the four above).
            merge: passages of one article that overlap (consecutive chunks share a sentence) are one
                passage, spanning both; False: each chunk as ranked (to fuse several searches by chunk id).

        Returns:
            The passages; fewer than ``k`` only when fewer pass the filter. FilterError (a QuestionError)
            for a malformed date, or a source or article that no indexed article has.
        """
        question, k = search_mod.check_question(question), search_mod.check_k(k, most=None)
        where = where if where is not None else filters.check(source, after, before, article)
        store, embedder = self._fresh()
        where = filters.validate(where, store) if where else where
        k = min(k, max(1, store.manifest["chunks"]))  # a k of 10**100 would overflow SQLite's LIMIT
        return search_mod.retrieve(
            store, embedder, question, k, self.settings, highlight=highlight, where=where, merge=merge
        )

    def article_sources(self) -> list[str]:
        """The sources that the indexed articles name, sorted: what ``search(source=...)`` accepts
        (``sources`` is the folders the index is built from)."""
        return self._fresh()[0].sources()

    def not_in_articles(self, question: str, passages: Sequence[Passage]) -> bool:
        """Whether nothing in the articles answers ``question``, judged from the ``passages`` that
        ``search`` found for it: the one rule of the chat, the JSON route and ``qa search --json``.

        True when there is no passage or the top one's ``answering.answerability`` is below
        ``settings.no_answer_threshold``. Only the top passage counts, judged as its own chunk
        (before overlapping passages were merged into it), so neither ``k`` nor merging changes the
        decision; its answering sentence is marked first if ``search`` left it unmarked.

        >>> question = "Who painted the Mona Lisa?"                  # doctest: +SKIP
        >>> lib.not_in_articles(question, lib.search(question))      # doctest: +SKIP
        True
        """
        question = search_mod.check_question(question)
        store, embedder = self._fresh()
        top = [_own_chunk(store, embedder, question, p) for p in passages[:1]]
        top = answering.mark_answers(top, embedder, question, store)
        return answering.not_in_articles(top, self.settings, question)

    @property
    def embedder(self) -> Embedding:
        """The model that embeds questions: the one the live index was built with."""
        return self._fresh()[1]

    @property
    def store(self) -> Index:
        """The live generation of the index (reopened when a build has swapped in a new one)."""
        return self._fresh()[0]

    @property
    def sources(self) -> list[str]:
        """The folders and files the index was last built from (absolute paths)."""
        return list(self.manifest.get("sources", []))

    @property
    def manifest(self) -> dict:
        """A copy of the live generation's manifest: model, chunk settings, counts, hashes, sources."""
        return dict(self._fresh()[0].manifest)

    def info(self) -> IndexInfo:
        store = self._fresh()[0]
        m = store.manifest
        return IndexInfo(
            str(self.settings.index_dir),
            m["model"],
            m["dim"],
            m["articles"],
            m["chunks"],
            store.size(),
            m["built_at"],
            m["chunk_tokens"],
            store.generation,
            m.get("ann", ""),
        )

    def check(self) -> list[str]:
        """Verify every file of the live generation (checksums, the database, counts): what is wrong,
        empty when nothing is. Reads the whole index: minutes at millions of chunks."""
        return self._fresh()[0].check()

    def _fresh(self) -> tuple[Index, object]:
        """The live generation and its model: reopened when a build has swapped in a new one.

        A generation built with another model (``qa build --full --model ...``) brings that
        model in. One that can't be opened (damaged on disk, a model that won't load) is logged
        once and the one already open keeps serving, so a running app never fails a question over it.
        """
        serving = self._serving
        live = self._backend.live()
        if live in (serving[0].generation, self._unusable):
            return serving
        with self._swap:
            store, embedder = self._serving
            live = self._backend.live()
            if live in (store.generation, self._unusable):
                return self._serving
            try:
                fresh = self._backend.open()
            except StoreError as e:
                return self._keep_serving(live, e)
            try:
                embedder = _embedder_for(fresh, embedder)
            except QAError as e:
                fresh.close()
                return self._keep_serving(fresh.generation, e)
            self.settings = self.settings.with_(model=fresh.manifest["model"])
            self._serving = (fresh, embedder)  # the old store closes when the last search lets go
            return self._serving

    def _keep_serving(self, unusable: str | None, error: QAError) -> tuple[Index, object]:
        log.warning("still serving %s: %s", self._serving[0].generation, error)
        self._unusable = unusable
        return self._serving

    def close(self) -> None:
        self._serving[0].close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _own_chunk(store: Index, embedder, question: str, p: Passage) -> Passage:
    """``p`` as its own chunk: the text, span and cosine it had before overlapping hits were merged into it
    (``search.merge_overlaps``; what joins it depends on ``k``). Costs a question encoding when it was merged."""
    row = store.chunks([p.chunk_id]).get(p.chunk_id)
    if row is None or (row.start, row.end) == (p.start, p.end):
        return p
    similarity = float(store.vectors([p.chunk_id])[0] @ embedder.encode([question], progress=False)[0])
    return replace(p, text=row.text, start=row.start, end=row.end, similarity=round(similarity, 6))


def _embedder_for(store: Index, embedder):
    """``embedder`` if ``store`` was built with it, else the model ``store`` was built with, loaded.

    Loading takes seconds, during which searches wait: only a rebuild with another model does it.
    """
    model = store.manifest["model"]
    if model == embedder.name:
        return embedder
    log.warning("%s was rebuilt with model %r: loading it", store.path, model)
    loaded = load_embedder(model)
    if loaded.dim != store.manifest["dim"]:
        raise IndexMismatchError(f"{model!r} gives {loaded.dim} dimensions, the index has {store.manifest['dim']}")
    return loaded
