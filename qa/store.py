"""The index directory on disk: FAISS vectors, SQLite metadata and full-text index, a manifest.

Layout (every generation is immutable once written; ``CURRENT`` names the live one)::

    index/
      CURRENT               "gen-000007": switched with an atomic rename
      .lock                 held by the one build allowed at a time
      gen-000007/
        manifest.json       format, model, dimension, settings, counts, per-article hashes
        vectors.faiss       IndexIDMap2(IndexFlatIP): ids are chunk ids
        meta.sqlite         articles, chunks, chunks_fts (FTS5, BM25), sentences (spans and
                            vectors of each chunk's sentences, for the answer stage)

A build copies the live generation into ``.tmp-*``, changes it, then renames it
to the next ``gen-*`` and swaps ``CURRENT``; a crash at any point leaves the
live generation untouched. This is the only module that touches FAISS.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from .errors import CorruptIndexError, IndexLockedError, IndexMismatchError, NoIndexError
from .text import fts_query

FORMAT = 1
FILES = ("manifest.json", "vectors.faiss", "meta.sqlite")
MANIFEST_KEYS = frozenset({"format", "model", "dim", "chunks", "article_hashes", "next_chunk_id", "files"})

SCHEMA = """
CREATE TABLE articles (id TEXT PRIMARY KEY, title TEXT, source TEXT, date TEXT, url TEXT,
                       path TEXT, hash TEXT, text TEXT);
CREATE TABLE chunks (id INTEGER PRIMARY KEY, article_id TEXT NOT NULL, idx INTEGER,
                     start INTEGER, end INTEGER, text TEXT);
CREATE INDEX chunks_article ON chunks(article_id);
CREATE VIRTUAL TABLE chunks_fts USING fts5(text, tokenize='porter unicode61 remove_diacritics 2');
"""
# Added after format 1 was out: indexes without it still open (their sentences are encoded when asked).
SENTENCES = """
CREATE TABLE IF NOT EXISTS sentences (chunk_id INTEGER NOT NULL, start INTEGER, end INTEGER, vector BLOB);
CREATE INDEX IF NOT EXISTS sentences_chunk ON sentences(chunk_id);
"""


@dataclass(frozen=True)
class ChunkRow:
    """A stored chunk with its article's metadata."""

    id: int
    article_id: str
    text: str
    start: int
    end: int
    title: str
    source: str
    date: str
    url: str


class Store:
    """A read-only view of one generation of the index. Safe to share between threads."""

    def __init__(self, path: Path, manifest: dict, index: faiss.Index, db: sqlite3.Connection) -> None:
        self.path = path
        self.manifest = manifest
        self._index = index
        self._db = db
        self._lock = threading.Lock()
        try:
            self._has_sentences = bool(self._rows("SELECT 1 FROM sqlite_master WHERE name = 'sentences'"))
        except BaseException:  # nobody else holds the connection to close it
            db.close()
            raise

    @classmethod
    def open(cls, index_dir: str | os.PathLike) -> Store:
        """Open the live generation of ``index_dir``.

        Raises NoIndexError when nothing was built there, CorruptIndexError (saying
        to rebuild) when a file is missing, truncated or fails its checksum.
        """
        index_dir = Path(index_dir)
        for attempt in range(5):
            gen = current_generation(index_dir)
            if gen is None:
                if (index_dir / "CURRENT").exists():
                    raise CorruptIndexError(
                        f"{index_dir}/CURRENT does not name a generation (gen-NNNNNN). {_REBUILD.format(index_dir)}"
                    )
                raise NoIndexError(f"No index at {index_dir}/. Run `qa build seeds/ --index {index_dir}` first.")
            try:
                return cls._open_generation(index_dir / gen)
            except CorruptIndexError:
                # A build swapped CURRENT and collected this generation while we read it: try the new one.
                if current_generation(index_dir) == gen and (index_dir / gen).is_dir():
                    raise
            time.sleep(0.02 * (attempt + 1))
        raise CorruptIndexError(f"{index_dir}/CURRENT names {gen}, which is missing. {_REBUILD.format(index_dir)}")

    @classmethod
    def _open_generation(cls, path: Path) -> Store:
        index_dir = path.parent
        if not path.is_dir():
            raise CorruptIndexError(f"{path} is missing. {_REBUILD.format(index_dir)}")
        try:
            manifest = json.loads((path / "manifest.json").read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise CorruptIndexError(f"{path}/manifest.json is unreadable ({e}). {_REBUILD.format(index_dir)}") from None
        if not isinstance(manifest, dict) or not MANIFEST_KEYS <= manifest.keys():
            raise CorruptIndexError(f"{path}/manifest.json is not a qa manifest. {_REBUILD.format(index_dir)}")
        if manifest.get("format") != FORMAT:
            raise IndexMismatchError(
                f"{index_dir}/ was written in index format {manifest.get('format')}; this qa reads format "
                f"{FORMAT}. {_REBUILD.format(index_dir)}"
            )
        _verify_files(path, manifest)
        try:
            index = faiss.read_index(str(path / "vectors.faiss"))
        except RuntimeError as e:
            raise _unreadable(path, e) from None
        try:
            db = sqlite3.connect(f"file:{path / 'meta.sqlite'}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        except sqlite3.DatabaseError as e:
            raise _unreadable(path, e) from None
        try:  # a failed open leaves no connection behind
            db.execute("SELECT count(*) FROM chunks").fetchone()
        except sqlite3.DatabaseError as e:
            db.close()
            raise _unreadable(path, e) from None
        if index.ntotal != manifest["chunks"] or index.d != manifest["dim"]:
            db.close()
            raise CorruptIndexError(f"{path}/vectors.faiss does not match its manifest. {_REBUILD.format(index_dir)}")
        return cls(path, manifest, index, db)  # which closes db if it raises

    @property
    def generation(self) -> str:
        return self.path.name

    def dense(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the ``k`` nearest chunks."""
        k = min(k, self._index.ntotal)
        if k <= 0:
            return []
        scores, ids = self._index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def lexical(self, query: str, k: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the ``k`` best full-text matches; higher is better."""
        match = fts_query(query)
        if not match or k <= 0:
            return []
        rows = self._rows(
            "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY s LIMIT ?",
            (match, k),
        )
        return [(int(i), -float(s)) for i, s in rows]

    def vectors(self, ids: Iterable[int]) -> np.ndarray:
        """The stored vectors of the given chunk ids, in order."""
        ids = list(ids)
        if not ids:
            return np.zeros((0, self._index.d), dtype=np.float32)
        return np.vstack([self._index.reconstruct(int(i)) for i in ids])

    def sentences(self, ids: Iterable[int]) -> dict[int, tuple[list[tuple[int, int]], np.ndarray]]:
        """Stored sentences of the given chunks: chunk id -> (article-offset spans, unit vectors).

        Chunks built without sentence vectors (an older index, a model that doesn't
        mean-pool its tokens) are missing from the answer.
        """
        ids = list(ids)
        if not ids or not self._has_sentences:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._rows(
            f"SELECT chunk_id, start, end, vector FROM sentences WHERE chunk_id IN ({marks}) ORDER BY rowid", ids
        )
        found: dict[int, tuple[list, list]] = {}
        for chunk_id, start, end, blob in rows:
            spans, vectors = found.setdefault(chunk_id, ([], []))
            spans.append((start, end))
            vectors.append(np.frombuffer(blob, dtype=np.float16))
        return {i: (spans, np.vstack(vectors).astype(np.float32)) for i, (spans, vectors) in found.items()}

    def chunks(self, ids: Iterable[int]) -> dict[int, ChunkRow]:
        """Chunk rows with their article metadata, by chunk id."""
        ids = list(ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._rows(
            "SELECT c.id, c.article_id, c.text, c.start, c.end, a.title, a.source, a.date, a.url "
            f"FROM chunks c JOIN articles a ON a.id = c.article_id WHERE c.id IN ({marks})",
            ids,
        )
        return {r[0]: ChunkRow(*r) for r in rows}

    def articles_with_texts(self, texts: Iterable[str]) -> dict[str, list[str]]:
        """The indexed articles whose text is exactly one of ``texts``: text -> their ids.

        One pass over the stored articles per 500 texts: an addition checks its articles
        against the collection without reading the collection's files.
        """
        texts = list(dict.fromkeys(texts))
        found: dict[str, list[str]] = {}
        for n in range(0, len(texts), 500):  # under SQLite's limit on parameters
            part = texts[n : n + 500]
            marks = ",".join("?" * len(part))
            for article_id, text in self._rows(f"SELECT id, text FROM articles WHERE text IN ({marks})", part):
                found.setdefault(text, []).append(article_id)
        return found

    def article_text(self, article_id: str) -> str:
        rows = self._rows("SELECT text FROM articles WHERE id = ?", (article_id,))
        return rows[0][0] if rows else ""

    def _rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """The rows of a query; a damaged meta.sqlite is a CorruptIndexError that names it and the fix."""
        try:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.ProgrammingError:  # a closed connection or a bad query: a bug, not damage
            raise
        except sqlite3.DatabaseError as e:
            raise CorruptIndexError(
                f"{self.path / 'meta.sqlite'} is damaged ({e}). {_REBUILD.format(self.path.parent)}"
            ) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def current_generation(index_dir: Path) -> str | None:
    try:
        gen = (Path(index_dir) / "CURRENT").read_bytes().decode("ascii", "replace").strip()
    except OSError:  # missing (no index yet), or not a file: Store.open tells the two apart
        return None
    return gen if re.fullmatch(r"gen-\d+", gen) else None


class Writer:
    """Writes the next generation: a copy of ``base`` (or an empty index) changed in a temp dir."""

    def __init__(self, index_dir: Path, manifest: dict, base: Store | None = None) -> None:
        self.index_dir = Path(index_dir)
        self.index_dir.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.index_dir))
        self.manifest = dict(manifest)
        if base is not None:
            self._index = faiss.read_index(str(base.path / "vectors.faiss"))
            shutil.copyfile(base.path / "meta.sqlite", self.tmp / "meta.sqlite")
            self._db = sqlite3.connect(self.tmp / "meta.sqlite")
            self.hashes = dict(base.manifest["article_hashes"])
            self.next_id = int(base.manifest["next_chunk_id"])
        else:
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(manifest["dim"]))
            self._db = sqlite3.connect(self.tmp / "meta.sqlite")
            self._db.executescript(SCHEMA)
            self.hashes, self.next_id = {}, 0
        self._db.executescript(SENTENCES)

    def remove(self, article_ids: Iterable[str]) -> None:
        """Drop these articles and their chunks from vectors, metadata and full text."""
        for aid in article_ids:
            ids = [r[0] for r in self._db.execute("SELECT id FROM chunks WHERE article_id = ?", (aid,))]
            if ids:
                self._index.remove_ids(np.array(ids, dtype=np.int64))
                self._db.executemany("DELETE FROM chunks_fts WHERE rowid = ?", [(i,) for i in ids])
                self._db.executemany("DELETE FROM sentences WHERE chunk_id = ?", [(i,) for i in ids])
                self._db.execute("DELETE FROM chunks WHERE article_id = ?", (aid,))
            self._db.execute("DELETE FROM articles WHERE id = ?", (aid,))
            self.hashes.pop(aid, None)

    def add(self, article, chunks, vectors: np.ndarray, sentences: Sequence | None = None) -> None:
        """Add one article (an ``articles.Article``), its chunks and their vectors.

        ``sentences``: per chunk, None or (spans in the article, one vector per span).
        """
        ids = np.arange(self.next_id, self.next_id + len(chunks), dtype=np.int64)
        self.next_id += len(chunks)
        self._db.execute(
            "INSERT OR REPLACE INTO articles VALUES (?,?,?,?,?,?,?,?)",
            (
                article.id,
                article.title,
                article.source,
                article.date,
                article.url,
                article.path,
                article.hash,
                article.text,
            ),
        )
        rows = [(int(i), article.id, c.index, c.start, c.end, c.text) for i, c in zip(ids, chunks, strict=True)]
        self._db.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?)", rows)
        self._db.executemany("INSERT INTO chunks_fts(rowid, text) VALUES (?,?)", [(r[0], r[5]) for r in rows])
        for i, found in zip(ids, sentences or (), strict=False):
            if found is not None:
                spans, vecs = found
                self._db.executemany(
                    "INSERT INTO sentences VALUES (?,?,?,?)",
                    [(int(i), s, e, v.astype(np.float16).tobytes()) for (s, e), v in zip(spans, vecs, strict=True)],
                )
        if len(chunks):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        self.hashes[article.id] = article.hash

    def commit(self) -> Path:
        """Write the files, then make this generation the live one; returns its path."""
        self._db.commit()
        n_articles = self._db.execute("SELECT count(*) FROM articles").fetchone()[0]
        self._db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
        self._db.commit()
        self._db.close()
        faiss.write_index(self._index, str(self.tmp / "vectors.faiss"))
        pause_point("writing")
        self.manifest.update(
            format=FORMAT,
            articles=n_articles,
            chunks=int(self._index.ntotal),
            next_chunk_id=self.next_id,
            built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            article_hashes=self.hashes,
            files={n: (self.tmp / n).stat().st_size for n in FILES[1:]},
            sha256={n: _sha256(self.tmp / n) for n in FILES[1:]},
        )
        _write_durably(self.tmp / "manifest.json", json.dumps(self.manifest, indent=1, sort_keys=True))
        for name in FILES[1:]:
            _fsync(self.tmp / name)
        gen = f"gen-{_next_generation(self.index_dir):06d}"
        previous = current_generation(self.index_dir)
        os.rename(self.tmp, self.index_dir / gen)
        _fsync(self.index_dir)
        pause_point("renamed")
        _write_durably(self.index_dir / "CURRENT", gen + "\n")
        pause_point("swapped")
        _collect_garbage(self.index_dir, keep={gen, previous})
        return self.index_dir / gen

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._db.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def lock(index_dir: Path) -> Iterator[None]:
    """Hold the build lock of ``index_dir``; a second builder gets IndexLockedError at once."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise IndexLockedError(
                f"{index_dir}/ is being built by {holder}. Wait for that build to finish, then try again."
            ) from None
        f.truncate(0)
        f.write(f"process {os.getpid()}")
        f.flush()
        try:
            for stale in index_dir.glob(".tmp-*"):  # left by a build that was killed
                shutil.rmtree(stale, ignore_errors=True)
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


_REBUILD = "Rebuild it with `qa build --full --index {0}`."


def _next_generation(index_dir: Path) -> int:
    nums = [int(p.name[4:]) for p in index_dir.glob("gen-*") if p.name[4:].isdigit()]
    return max(nums, default=0) + 1


def _collect_garbage(index_dir: Path, keep: set[str | None]) -> None:
    """Delete every generation but ``keep``: the live one and its predecessor, which readers may
    still be opening. Orphans of builds killed between rename and swap go too."""
    for old in index_dir.glob("gen-*"):
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


def _verify_files(path: Path, manifest: dict) -> None:
    """CorruptIndexError unless each file has the size and checksum that the manifest records."""
    for name, size in manifest["files"].items():
        actual = (path / name).stat().st_size if (path / name).exists() else -1
        if actual != size:
            raise CorruptIndexError(
                f"{path / name} is {'missing' if actual < 0 else 'truncated or changed'} "
                f"(expected {size} bytes, found {max(actual, 0)}). {_REBUILD.format(path.parent)}"
            )
    for name, digest in manifest.get("sha256", {}).items():
        if _sha256(path / name) != digest:
            raise CorruptIndexError(f"{path / name} is damaged (checksum mismatch). {_REBUILD.format(path.parent)}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _unreadable(path: Path, e: Exception) -> CorruptIndexError:
    return CorruptIndexError(f"{path} can't be read ({_faiss_message(e)}). {_REBUILD.format(path.parent)}")


def _faiss_message(e: Exception) -> str:
    """The useful part of a FAISS/SQLite error, without FAISS's C++ function and source location."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return re.sub(r"^Error in .*? at \S+:\d+: (Error: )?", "", text)


def pause_point(stage: str) -> None:
    """Test hook: with QA_TEST_PAUSE_AT=<stage> a build says so on stderr and sleeps here, so a test
    can kill it at a known point. Stages: embedding, writing, renamed, swapped."""
    if os.environ.get("QA_TEST_PAUSE_AT") == stage:
        print(f"qa-test-paused-at {stage}", file=sys.stderr, flush=True)
        time.sleep(300)


def _write_durably(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
