"""Build or update an index: read articles, chunk and embed only what changed, swap it in."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import articles as articles_mod
from . import backends
from .articles import Article, Skipped
from .backends import Backend, Index, Local
from .chunking import chunk, sentence_spans
from .config import Settings
from .errors import CorruptIndexError, IndexMismatchError, NoArticlesError, NoIndexError, StoreError
from .store import give_back_memory, pause_point

if TYPE_CHECKING:
    from .embedding import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildReport:
    """What a build did. ``full_reason`` says why everything was (re-)embedded, if it was;
    ``notices`` what was indexed but changed on reading (a title too long to be one, cut)."""

    added: int
    changed: int
    removed: int
    unchanged: int
    chunks_embedded: int
    chunks_total: int
    skipped: list[Skipped] = field(default_factory=list)
    full_reason: str = ""
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)
    resumed: int = 0  # passages an interrupted build had embedded, reused

    def summary(self) -> str:
        parts = [
            f"{self.added} added",
            f"{self.changed} changed",
            f"{self.removed} removed",
            f"{self.unchanged} unchanged",
            f"{len(self.skipped)} skipped",
        ]
        resumed = f" (resumed: {self.resumed} more embedded by an interrupted build)" if self.resumed else ""
        return (
            f"Articles: {', '.join(parts)}. Embedded {self.chunks_embedded} chunks{resumed}; "
            f"the index holds {self.chunks_total} chunks. ({self.seconds:.1f} s)"
        )


@dataclass(frozen=True, slots=True)
class Listed:
    """An article as the first reading of a collection met it; its text is not kept."""

    id: str
    hash: str
    path: str
    chars: int
    file: Path | None  # what it was read from; None for an article made in memory

    @classmethod
    def of(cls, article: Article, file: Path | None = None) -> Listed:
        return cls(article.id, article.hash, article.path, len(article.text), file)


@dataclass(frozen=True)
class Collection:
    """The articles read from some paths, what was skipped, and what was changed on reading (``notices``).

    ``articles``: the articles themselves, in memory (an evaluation's data set, the files just added);
    empty for a whole collection read from ``paths``, which ``listed`` lists and ``read`` reads again,
    an article at a time, so that a build holds no more of it than it is embedding.

    ``partial``: ``articles`` are only some of the collection under ``paths`` (files just added):
    they are added or replace their older versions, every other indexed article stays as it is.
    """

    articles: list[Article]
    skipped: list[Skipped]
    paths: tuple[str, ...] = ()  # absolute: the manifest records them so the app can rebuild the same set
    partial: bool = False
    notices: list[str] = field(default_factory=list)
    listed: list[Listed] | None = None

    def entries(self) -> list[Listed]:
        """Every article of the collection, without its text."""
        if self.listed is not None:
            return self.listed
        return [Listed.of(a) for a in self.articles]

    def read(self, wanted: Sequence[Listed]) -> Iterator[Article]:
        """The ``wanted`` articles, in the collection's order. Read from ``paths`` again, they are
        what the files hold now: an article whose file changed since it was listed comes as it is now
        (its new hash with it), one that is gone no longer comes."""
        ids = {w.id for w in wanted}
        if self.listed is None:
            return (a for a in self.articles if a.id in ids)
        # Only their files, as a full reading names and orders them; skips and notices were told the first time.
        files = sorted({w.file for w in wanted})
        return (a for a in articles_mod.read(self.paths, [], only=files, notices=[]) if a.id in ids)


def collect(
    paths: Sequence[str | os.PathLike],
    index: Backend | str | os.PathLike | None = None,
    only: Sequence[str | os.PathLike] | None = None,
) -> Collection:
    """List every article under ``paths`` (``Collection.listed``); NoArticlesError when none is readable.

    Unless the index (a backend, or an index directory) was built from exactly these ``paths``: then every
    article was deleted, and the empty collection is returned, so that the build removes
    them all instead of the index citing deleted articles forever.

    ``only``: read just these files under ``paths`` (see ``articles.read``), for a partial
    collection (``Collection.partial``, its articles in memory) that an index of ``paths`` takes in
    without re-reading the rest.
    """
    skipped: list[Skipped] = []
    notices: list[str] = []
    sources = tuple(str(Path(p).resolve()) for p in paths)
    if only is not None:
        found = list(articles_mod.read(paths, skipped, only=only, notices=notices))
        return Collection(found, skipped, sources, partial=True, notices=notices)
    listed = [
        Listed.of(a, f) for f, a in articles_mod.located(paths, skipped, notices=notices) if isinstance(a, Article)
    ]
    where = ", ".join(str(p) for p in paths)
    if not listed and not _built_from(index, sources):
        raise NoArticlesError(
            f"No readable articles in {where} ({len(skipped)} skipped). "
            "qa reads .txt, .md, .html, .jsonl and .pdf files."
        )
    if not listed:
        log.warning("no articles are left in %s: the index will be emptied", where)
    return Collection([], skipped, sources, notices=notices, listed=listed)


def _built_from(index: Backend | str | os.PathLike | None, sources: tuple[str, ...]) -> bool:
    """Whether the live index records exactly ``sources`` as what it was built from."""
    if index is None:
        return False
    if isinstance(index, (str, os.PathLike)):
        index = Local(Path(index))
    try:
        store = index.open()
    except StoreError:
        return False
    try:
        return tuple(store.manifest.get("sources", ())) == sources
    finally:
        store.close()


def build(
    collection: Collection, settings: Settings, embedder, full: bool = False, progress: Progress = None
) -> BuildReport:
    """Bring the index at ``settings.index_dir`` in line with ``collection``.

    Only new and changed articles are chunked and embedded, unless the model or chunk
    settings changed or ``full`` is set; then everything is, and ``full_reason`` says why.
    Counts are always against the previous index, so a full build still reports what changed.

    A partial ``collection`` removes nothing, its copies of indexed texts are skipped, and its
    "unchanged" are all the other indexed articles; when everything must be re-embedded, the
    whole collection under its ``paths`` is read instead.
    """
    began = time.perf_counter()
    # Compared with the live index; "dim" joins them only once there is something to embed,
    # because asking a lazily loaded embedder for it loads the model (seconds).
    key = {
        "model": embedder.name,
        "chunk_tokens": settings.chunk_tokens,
        "overlap_sentences": settings.overlap_sentences,
    }
    backend = backends.of(settings)
    with backend.lock():
        base, old, full_reason = _base(backend, key, full)
        try:
            if collection.partial:
                collection = _taken_in(collection, base, settings, embedder)
            found, skipped, partial = collection.entries(), collection.skipped, collection.partial
            new_ids = {a.id for a in found}
            removed = [] if partial else [i for i in old if i not in new_ids]
            same_sources = (
                not collection.paths or base is None or base.manifest.get("sources") == list(collection.paths)
            )
            same_dense = base is not None and base.manifest.get("dense_index", "auto") == settings.dense_index
            if same_dense and not removed and same_sources and all(old.get(a.id) == a.hash for a in found):
                unchanged = len(old) if partial else len(found)
                seconds = time.perf_counter() - began
                chunks = base.manifest["chunks"]
                return BuildReport(0, 0, 0, unchanged, 0, chunks, skipped, seconds=seconds, notices=collection.notices)
            manifest = {**key, "dim": embedder.dim}
            if base is not None and base.manifest.get("dim") != manifest["dim"]:
                full_reason = f"dim changed from {base.manifest.get('dim')!r} to {manifest['dim']!r}"
                base.close()
                base = None
            todo = [a for a in found if base is None or old.get(a.id) != a.hash]
            if collection.paths:
                manifest["sources"] = list(collection.paths)
            embedded, total, failed, resumed = _write(
                backend, settings, manifest, base, collection, todo, removed, old, embedder, progress
            )
        finally:
            if base is not None:
                base.close()
    lost = {s.path for s in failed}
    indexed = [a for a in found if (a.path or a.id) not in lost]
    added = sum(1 for a in indexed if a.id not in old)
    changed = sum(1 for a in indexed if a.id in old and old[a.id] != a.hash)
    replaced = {a.id for a in found if a.id in old and old[a.id] != a.hash}  # changed, or left out trying
    return BuildReport(
        added,
        changed,
        len(removed),
        len(old) - len(replaced) if partial else len(indexed) - added - changed,
        embedded,
        total,
        skipped + failed,
        full_reason,
        time.perf_counter() - began,
        notices=collection.notices,
        resumed=resumed,
    )


def _taken_in(collection: Collection, base: Index | None, settings: Settings, embedder) -> Collection:
    """A partial ``collection`` as the index ``base`` takes it in: without copies of texts that other
    indexed articles hold. Or, when there is no index to add to or it must be re-embedded whole
    (other settings, another model), the whole collection under its ``paths``, read now."""
    # Asks a lazily loaded model its dimension, loading it: an addition has something to embed anyway.
    if base is None or base.manifest.get("dim") != embedder.dim:
        log.info("reading all of %s: the index is rebuilt from scratch", ", ".join(collection.paths))
        return collect(collection.paths, backends.of(settings))
    ids = {a.id for a in collection.articles}
    holders = base.articles_with_texts(a.text for a in collection.articles)
    kept, copies = [], []
    for a in collection.articles:
        # An article being replaced now holds another text after this build: its old one is no copy.
        others = sorted(i for i in holders.get(a.text, ()) if i not in ids)
        if others:
            copies.append(Skipped(a.path, f"same text as {others[0]}, indexed once"))
            log.warning("skipped %s: %s", a.path, copies[-1].reason)
        else:
            kept.append(a)
    return replace(collection, articles=kept, skipped=collection.skipped + copies)


BATCH_CHARS = 500_000  # article text chunked and embedded per step (~700 passages): what a build holds


def _write(
    backend: Backend,
    settings: Settings,
    manifest: dict,
    base: Index | None,
    collection: Collection,
    todo: list[Listed],
    removed: list[str],
    old: dict[str, str],
    embedder,
    progress: Progress,
) -> tuple[int, int, list[Skipped], int]:
    """Write the next generation: ``base`` minus removed and changed articles, plus ``todo``.

    Articles stream through chunking, embedding and writing a batch at a time, so memory stays bounded
    whatever their number; what a killed build already wrote out is reused. An article that fails to
    chunk or embed is left out, with a warning, and the build goes on. Returns (chunks embedded, chunks
    in the new generation, the articles left out, chunks reused from a killed build)."""
    writer = backend.writer(manifest, base, settings.dense_index)
    try:
        if base is not None:
            writer.remove(removed + [a.id for a in todo if a.id in old])
        todo = [a for a in todo if not writer.reuse(a)]
        if writer.reused:
            log.warning("resuming an interrupted build: %d passages it embedded are reused", writer.reused)
        pause_point("embedding")
        bar = _Bar(progress, sum(a.chars for a in todo))
        embedded, failed = 0, []
        if settings.ray_address:
            from . import cluster

            steps = cluster.embedded(collection, todo, settings, embedder.name, failed)
        else:
            steps = _embedded_here(collection, todo, settings, embedder, bar.step, failed)
        try:
            for step in steps:
                offset = 0
                for article, cs in zip(step.articles, step.chunks, strict=True):
                    end = offset + len(cs)
                    writer.add(article, cs, step.vectors[offset:end], step.sentences[offset:end])
                    offset = end
                embedded += offset
                failed += step.lost
                bar.done_with(step.chars, step.tried)
                del step  # what the writer does not keep: freed, and
                give_back_memory()  # returned to the system
        finally:
            bar.close()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return embedded, writer.manifest["chunks"], failed, writer.reused


@dataclass
class Embedded:
    """One step of a build: articles chunked and embedded, ready to write, and those left out."""

    articles: list[Article]
    chunks: list[list]  # each article's
    vectors: np.ndarray  # every chunk's, in order
    sentences: list  # every chunk's (sentence spans, vectors), or None
    lost: list[Skipped]  # articles that failed to chunk or embed
    chars: int  # of the articles read for this step
    tried: int  # chunks that were tried


def _embedded_here(
    collection: Collection, todo: list[Listed], settings: Settings, embedder, step, failed: list[Skipped]
) -> Iterator[Embedded]:
    """``todo`` read again, chunked and embedded in this process, a batch at a time."""
    for batch in _batches(_reread(collection, todo, failed)):
        kept, pieces, lost = _chunk_each(batch, settings, embedder)
        tried = sum(len(cs) for cs in pieces)
        kept, pieces, (vectors, sentences), lost_embedding = _embed_articles(kept, pieces, embedder, step)
        yield Embedded(kept, pieces, vectors, sentences, lost + lost_embedding, sum(len(a.text) for a in batch), tried)


def _reread(collection: Collection, todo: list[Listed], failed: list[Skipped]) -> Iterator[Article]:
    """``todo``'s articles, read again; those whose file no longer holds them are added to ``failed``."""
    left = {a.id: a for a in todo}
    for article in collection.read(todo):
        check_reread(article.hash, left.pop(article.id))
        yield article
    vanished(left.values(), failed)


def check_reread(article_hash: str, listed: Listed) -> None:
    """Say so when an article read again is not what was listed: it is indexed as it is now."""
    if article_hash != listed.hash:
        log.warning("%s changed while the build ran: it is indexed as it is now", listed.path or listed.id)


def vanished(gone: Iterable[Listed], failed: list[Skipped]) -> None:
    """Articles listed to embed that their files no longer held when read again: added to ``failed``."""
    for listed in gone:
        failed.append(Skipped(listed.path or listed.id, "was removed or changed while the build ran; build again"))
        log.warning("skipped %s: %s", failed[-1].path, failed[-1].reason)


def _batches(articles: Iterable[Article]):
    batch, chars = [], 0
    for a in articles:
        batch.append(a)
        chars += len(a.text)
        if chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


class _Bar:
    """Progress over a build's batches, in passages: the total is estimated from the characters left
    (passages per character so far), so a bar shows the rate and the time left from the first batch on.

    ``progress`` as for ``Library.build``: a function gets (passages done, passages estimated)."""

    def __init__(self, progress: Progress, chars: int) -> None:
        self.chars_left, self.chars_seen = chars, 0
        self.done = 0
        self.per_char = 1 / 700  # about right for news and Wikipedia with the default chunking
        self.report = progress if callable(progress) else None
        self.tqdm = None
        estimate = self.total()
        if not callable(progress) and (
            progress is True or (progress is None and sys.stderr.isatty() and estimate > 256)
        ):
            from tqdm.auto import tqdm

            self.tqdm = tqdm(total=estimate, desc="Embedding", unit="passage", file=sys.stderr)
        self._in_batch = 0

    def total(self) -> int:
        return self.done + round(self.chars_left * self.per_char)

    def step(self, done: int, total: int) -> None:
        """What ``_embed_articles`` reports within a batch."""
        if self.tqdm is not None:
            self.tqdm.update(done - self._in_batch)
        self._in_batch = done
        if self.report is not None:
            self.report(self.done + done, max(self.total(), self.done + total))

    def done_with(self, chars: int, passages: int) -> None:
        self.chars_seen += chars
        self.done += passages
        self.chars_left = max(0, self.chars_left - chars)
        self.per_char = self.done / self.chars_seen if self.done else self.per_char
        if self.tqdm is not None:
            self.tqdm.total = self.total()
            self.tqdm.n = self.done
            self.tqdm.refresh()
        if self.report is not None:
            self.report(self.done, self.total())
        self._in_batch = 0

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()


def _chunk_each(todo: list[Article], settings: Settings, embedder) -> tuple[list[Article], list[list], list[Skipped]]:
    """Each article's chunks; an article whose chunking fails is left out with the reason."""
    kept, pieces, failed = [], [], []
    budget = settings.chunk_tokens
    if todo and budget > embedder.max_tokens:  # longer chunks would be cut silently by the model
        log.warning(
            "chunks of %d tokens are longer than %s reads: cut to %d", budget, embedder.name, embedder.max_tokens
        )
        budget = embedder.max_tokens
    for a in todo:
        try:
            pieces.append(chunk(a.id, a.text, embedder.token_spans, budget, settings.overlap_sentences))
        except Exception as e:  # a bug or a text the tokenizer refuses: this article only, never the build
            failed.append(_left_out(a, "could not be split into passages", e))
            continue
        kept.append(a)
    return kept, pieces, failed


def _embed_articles(todo: list[Article], pieces: list[list], embedder, progress: Progress):
    """``_embed`` of all articles' chunks at once; if that fails, article by article, leaving out
    those that fail, and reporting to a progress function after each article. Returns (articles kept,
    their chunks, (vectors, sentences), articles left out).

    What the progress function raises (a `qa build` that went away) stops the build, as it should.
    """
    stopped: list[BaseException] = []
    if callable(progress):
        report = progress

        def progress(done: int, total: int) -> None:
            try:
                report(done, total)
            except BaseException as e:
                stopped.append(e)
                raise

    try:
        return todo, pieces, _embed([c for cs in pieces for c in cs], embedder, progress), []
    except Exception as e:
        if stopped:
            raise
        log.warning("embedding failed (%s); embedding article by article to leave out the one at fault", e)
    kept, kept_pieces, parts, lost = [], [], [], []
    done, total = 0, sum(len(cs) for cs in pieces)
    for a, cs in zip(todo, pieces, strict=True):
        try:
            parts.append(_embed(cs, embedder, False))
        except Exception as e:
            lost.append(_left_out(a, "could not be embedded", e))
        else:
            kept.append(a)
            kept_pieces.append(cs)
        done += len(cs)
        if callable(progress):  # outside the try: what it raises (a stop) stops the build here too
            progress(done, total)
    dim = embedder.dim
    vectors = np.concatenate([v for v, _ in parts]) if parts else np.zeros((0, dim), dtype=np.float32)
    return kept, kept_pieces, (vectors, [s for _, ss in parts for s in ss]), lost


def _left_out(article: Article, what: str, error: Exception) -> Skipped:
    reason = f"{what} ({type(error).__name__}: {str(error)[:200]}); the build went on without it"
    log.warning("skipped %s: %s", article.path or article.id, reason)
    return Skipped(article.path or article.id, reason)


def _embed(chunks: list, embedder, progress: Progress) -> tuple[np.ndarray, list]:
    """Chunk vectors and, where the embedder gives them, each chunk's (sentence spans, sentence vectors).

    Spans are offsets into the article, like the chunk's own ``start``/``end``.
    """
    texts = [c.text for c in chunks]
    local = [sentence_spans(c.text) for c in chunks]
    vectors, pooled = embedder.encode_passages(texts, local, progress=progress)
    sentences = [
        None if vecs is None else ([(c.start + s, c.start + e) for s, e in spans], vecs)
        for c, spans, vecs in zip(chunks, local, pooled, strict=True)
    ]
    return vectors, sentences


def _base(backend: Backend, manifest: dict, full: bool) -> tuple[Index | None, Mapping[str, str], str]:
    """The live generation to update (None when everything is rebuilt), the article hashes it
    holds, and the reason for a full rebuild."""
    try:
        base = backend.open()
    except NoIndexError:
        return None, {}, "there was no index yet"
    except (CorruptIndexError, IndexMismatchError) as e:
        log.warning("rebuilding everything: %s", e)
        return None, {}, f"the old index is unusable ({e})"
    reason = "--full was asked for" if full else ""
    for key, value in manifest.items():
        if not reason and base.manifest.get(key) != value:
            reason = f"{key} changed from {base.manifest.get(key)!r} to {value!r}"
    if reason:
        old = base.article_hashes()
        base.close()
        return None, old, reason
    return base, Hashes(base), ""


class Hashes(Mapping):
    """The article hashes of a live generation, read as they are asked for: a build of a few added
    files looks up only theirs (all of them took most of a one-article update at 1M chunks), one
    that goes through them all reads them all once."""

    def __init__(self, store: Index) -> None:
        self._store = store
        self._all: dict[str, str] | None = None
        self._some: dict[str, str | None] = {}

    def __getitem__(self, article_id: str) -> str:
        if self._all is not None:
            return self._all[article_id]
        if article_id not in self._some:
            self._some[article_id] = self._store.article_hashes([article_id]).get(article_id)
        found = self._some[article_id]
        if found is None:
            raise KeyError(article_id)
        return found

    def __iter__(self) -> Iterator[str]:
        if self._all is None:
            self._all = self._store.article_hashes()
        return iter(self._all)

    def __len__(self) -> int:
        return self._store.manifest["articles"] if self._all is None else len(self._all)
