"""The index directory on disk: SQLite metadata and full-text index, dense vectors in immutable segments.

Layout (format 2)::

    index/
      CURRENT                    "data-000002/gen-000009": the live generation, switched by an atomic rename
      .lock                      held by the one build allowed at a time
      data-000002/
        meta.sqlite              (WAL) articles (text stored once, hashes, a PDF's page starts), chunks (offsets,
                                 packed sentence vectors), chunks_fts (contentless FTS5, BM25), segments,
                                 tombstones, generations
        seg-000004.faiss, .ids   dense segments (see dense.py), written once, never changed
        seg-000011.faiss, .ids, .f16
      .next-data-000003/         a full rebuild under way (kept if it is killed, and resumed)

Generations are versions of one database: each article row records the generation that added it and the
one that removed it, and a reader of generation G sees exactly the rows added at or before G and not yet
removed at G. A build of G+1 adds rows (in batches, committed as it goes, so a killed build resumes from
them), then in one transaction marks what it removed, records the generation, and only then swaps
``CURRENT``: readers see G or G+1, never a mix, and a crash at any point leaves G whole. A removed
chunk's vector stays in its segment, hidden by a tombstone, until segments of a similar size are merged
(as Lucene does), so an update writes in proportion to what changed. Rows and segments that neither the
live generation nor the one before it can see are deleted by the next build.

A full rebuild (a new model or chunking) writes a new data directory beside the live one and swaps
``CURRENT`` to it. FAISS is touched only by dense.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import sqlite3
import struct
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import dense, filters
from .articles import Article
from .errors import CorruptIndexError, IndexLockedError, IndexMismatchError, NoIndexError
from .filters import Filter
from .pdf import pages_around
from .text import STOPWORDS, fts_query

FORMAT = 2
NEVER = 1 << 62  # "removed" of a row no generation has removed
ALLOWED_KEPT = 4  # filters whose chunk ids a Store keeps (8 bytes an id, and up to 8 as JSON: 16 MB a million)
# A filtered search first reads this many times the candidates it needs unfiltered and keeps those the
# filter lets through: enough when it lets through a twentieth of the collection or more (0: always gather its
# chunk ids); the last SHORT_KEPT filters for which that fell short, or would, go straight to their ids.
POST_FILTER_TIMES = 20
POST_FILTER_MOST = 20_000  # (a k of thousands gathers the filter's ids instead)
SHORT_KEPT = 64
READERS = 4  # connections a Store reads through at once (a search's full-text query beside its dense side's)
FLUSH_CHUNKS = 20_000  # chunks a build holds before writing them out as a batch (a segment and its rows)
MERGE_FACTOR = 4  # this many segments of one size tier are merged into one
BOOK_SAMPLE = 1000  # sentence vectors that train a codebook well (a batch with fewer trains a provisional one)
_CURRENT = re.compile(r"(data-\d{6})/gen-(\d{6,})")

SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE articles (row INTEGER PRIMARY KEY, id TEXT NOT NULL, title TEXT, source TEXT, date TEXT, url TEXT,
                       path TEXT, hash TEXT NOT NULL, text_key INTEGER, text TEXT NOT NULL,
                       added INTEGER NOT NULL, removed INTEGER NOT NULL, day TEXT, pages TEXT, title_key TEXT);
CREATE INDEX articles_id ON articles(id);
CREATE INDEX articles_text ON articles(text_key);
CREATE INDEX articles_added ON articles(added);
CREATE INDEX articles_removed ON articles(removed);
CREATE INDEX articles_source_day ON articles(source, day, added, removed);
CREATE INDEX articles_day ON articles(day, added, removed);
CREATE INDEX articles_title ON articles(title_key, id, added, removed);
CREATE TABLE chunks (id INTEGER PRIMARY KEY, article INTEGER NOT NULL, idx INTEGER NOT NULL, start INTEGER NOT NULL,
                     end INTEGER NOT NULL, segment INTEGER, sentences BLOB);
CREATE INDEX chunks_article ON chunks(article);
CREATE INDEX chunks_segment ON chunks(segment);
CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='', tokenize='porter unicode61 remove_diacritics 2');
CREATE TABLE segments (id INTEGER PRIMARY KEY, record TEXT NOT NULL, added INTEGER NOT NULL,
                       dropped INTEGER NOT NULL);
CREATE TABLE tombstones (chunk INTEGER PRIMARY KEY, segment INTEGER NOT NULL, gen INTEGER NOT NULL);
CREATE INDEX tombstones_segment ON tombstones(segment);
CREATE TABLE generations (gen INTEGER PRIMARY KEY, manifest TEXT NOT NULL);
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE codebooks (id INTEGER PRIMARY KEY, sample INTEGER NOT NULL, limits BLOB NOT NULL);
CREATE TABLE terms (term TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID;
"""
# Unary +: rows are never looked up by their generations (nearly every row shares them), only filtered.
_VISIBLE = "+a.added <= :gen AND +a.removed > :gen"
TOKENIZE = "porter unicode61 remove_diacritics 2"
# Full-text queries of bigger indexes keep the question's rarest words only (``Terms.match``): FTS5 scores
# every row that matches, so one common word costs more than all the rare ones (docs/benchmarks.md).
RARE_TERMS_FROM = 200_000  # chunks
RARE_TERMS, COMMON_SHARE = 4, 0.05  # at 1M: hybrid p50 45 ms, needle hit@5 0.9435 (6 words: 59 ms, 0.944)


@dataclass(frozen=True)
class ChunkRow:
    """A stored chunk with its article's metadata. ``pages``: (page number, start offset) of the page the
    chunk starts on and of each page starting inside it (``pdf.pages_around``); empty when not from a PDF."""

    id: int
    article_id: str
    text: str
    start: int
    end: int
    title: str
    source: str
    date: str
    url: str
    pages: tuple[tuple[int, int], ...] = ()


class Store:
    """A read-only view of one generation of the index. Safe to share between threads."""

    def __init__(self, index_dir: Path, name: str, manifest: dict, db: sqlite3.Connection) -> None:
        self.index_dir = Path(index_dir)
        self.generation = name  # what CURRENT said: "data-000002/gen-000009"
        self.path = self.index_dir / name.split("/")[0]
        self.gen = int(name.split("-")[-1])
        self.manifest = manifest
        self._idle = [db]  # read connections not in use; more are opened as concurrent reads need them
        self._opened = 1
        self._closed = False
        self._readers = threading.Condition()
        self._segments: dict[int, dense.Segment] = {}
        self._sources: list[str] | None = None
        self._allowed_kept: OrderedDict[Filter, list] = OrderedDict()  # [ids, their JSON or None]
        self._short: OrderedDict[Filter, None] = OrderedDict()  # filters whose post-filtering fell short, or would
        self._wide: OrderedDict[Filter, None] = OrderedDict()  # filters that let enough through to try it
        self._allowed_lock = threading.Lock()
        self._gathering = threading.Lock()
        try:
            # Indexes written before date filters lack the column: their dates are read as searches go.
            self._day = "a.day" if _has_column(db, "day") else "qa_day(a.date)"
            self._titles = _has_column(db, "title_key")
            # what _lets_too_few_through counts with (an older index gains them at its next build)
            self._counted = {row[1] for row in db.execute("PRAGMA index_list(articles)")} >= {
                "articles_source_day",
                "articles_day",
            }
            _add_functions(db)
            records = dict(self._rows("SELECT id, record FROM segments WHERE added <= ?", (self.gen,)))
            for seg_id, kind in manifest["segments"]:
                stem = self.path / _segment_name(seg_id)
                problems = (
                    dense.verify(stem, json.loads(records[seg_id]), checksums=False)
                    if seg_id in records
                    else [f"{stem} is not recorded in meta.sqlite"]
                )
                if problems:
                    raise CorruptIndexError(f"{problems[0]}. {_REBUILD.format(self.index_dir)}")
                hidden = self._rows("SELECT chunk FROM tombstones WHERE segment = ? AND gen <= ?", (seg_id, self.gen))
                try:
                    self._segments[seg_id] = dense.Segment(stem, kind, np.array([i for (i,) in hidden], dtype=np.int64))
                except (RuntimeError, ValueError, OSError) as e:
                    raise CorruptIndexError(
                        f"{stem} can't be read ({dense.message(e)}). {_REBUILD.format(self.index_dir)}"
                    ) from None
            self._books = {
                i: np.frombuffer(limits, dtype=np.float32)
                for i, limits in self._rows("SELECT id, limits FROM codebooks")
            }
            # An index written before qa read PDFs has no page column: its articles have no pages.
            self._pages = (
                "a.pages" if any(c[1] == "pages" for c in self._rows("PRAGMA table_info(articles)")) else "NULL"
            )
            self._hidden = self._rows(
                "SELECT count(*) FROM chunks WHERE article IN "
                "(SELECT row FROM articles WHERE added > :gen OR removed <= :gen)",
                {"gen": self.gen},
            )[0][0]
        except BaseException:  # nobody else holds the connection to close it
            db.close()
            raise

    @classmethod
    def open(cls, index_dir: str | os.PathLike) -> Store:
        """Open the live generation of ``index_dir``: a few small reads whatever its size (files are
        checked when written and by ``check``, not here).

        Raises NoIndexError when nothing was built there, IndexMismatchError for an index of another
        format, CorruptIndexError (saying how to rebuild) when what CURRENT names is missing or damaged.
        """
        index_dir = Path(index_dir)
        for attempt in range(5):
            name = current_generation(index_dir)
            if name is None:
                raise _no_generation(index_dir)
            try:
                return cls._open_generation(index_dir, name)
            except CorruptIndexError:
                # A build swapped CURRENT and collected this generation while we read it: try the new one.
                if current_generation(index_dir) == name:
                    raise
            time.sleep(0.02 * (attempt + 1))
        raise CorruptIndexError(f"{index_dir}/CURRENT names {name}, which is missing. {_REBUILD.format(index_dir)}")

    @classmethod
    def _open_generation(cls, index_dir: Path, name: str) -> Store:
        data = index_dir / name.split("/")[0]
        gen = int(name.split("-")[-1])
        if not (data / "meta.sqlite").is_file():
            raise CorruptIndexError(f"{data}/meta.sqlite is missing. {_REBUILD.format(index_dir)}")
        try:
            db = _connect_reading(data / "meta.sqlite")
            row = db.execute("SELECT manifest FROM generations WHERE gen = ?", (gen,)).fetchone()
        except sqlite3.DatabaseError as e:
            with contextlib.suppress(Exception):
                db.close()
            raise CorruptIndexError(f"{data}/meta.sqlite can't be read ({e}). {_REBUILD.format(index_dir)}") from None
        try:
            manifest = json.loads(row[0]) if row else None
        except ValueError:
            manifest = None
        if not isinstance(manifest, dict) or not {"format", "model", "dim", "chunks", "segments"} <= manifest.keys():
            db.close()
            raise CorruptIndexError(
                f"{data}/meta.sqlite is damaged: it does not hold generation {gen}, which CURRENT names. "
                f"{_REBUILD.format(index_dir)}"
            )
        return cls(index_dir, name, manifest, db)  # which closes db if it raises

    def dense(
        self, vector: np.ndarray, k: int, exact: bool = False, where: Filter = filters.NONE
    ) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the ``k`` nearest chunks (of those ``where`` lets through);
        ``exact`` scans every vector even where a segment has an approximate index."""
        if k <= 0:
            return []
        if where and (found := self._post_filtered(lambda n: self.dense(vector, n, exact), k, where)) is not None:
            return found
        only = self._allowed(where) if where else None
        found = [hit for seg in self._segments.values() for hit in seg.search(vector, k, exact, only)]
        return sorted(found, key=lambda hit: -hit[1])[:k]

    def lexical(self, query: str, k: int, where: Filter = filters.NONE) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the ``k`` best full-text matches (of those ``where`` lets through);
        higher is better."""
        if self.manifest["chunks"] >= RARE_TERMS_FROM:
            match = TERMS.match(query, self._df, self.manifest["chunks"])
        else:
            match = fts_query(query)
        if not match or k <= 0:
            return []
        if where and (found := self._post_filtered(lambda n: self._matches(match, n), k, where, True)) is not None:
            return found
        if where:
            rows = self._rows(
                # The filter's chunk ids, checked before a match is scored. Unary +: SQLite checks them itself;
                # handed to FTS5 as a rowid constraint, each id would be a lookup (4.4 s for 100,000 of them).
                "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH :match "
                "AND +rowid IN (SELECT value FROM json_each(:ids)) ORDER BY s LIMIT :k",
                {"match": match, "ids": self._allowed_json(where), "k": k},
            )
            return [(int(i), -float(s)) for i, s in rows]
        return self._matches(match, k)

    def _matches(self, match: str, k: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the ``k`` best chunks of this generation that the FTS5 query ``match`` finds."""
        limit = k + self._hidden + 16  # rows of other generations may come first: asked for, then left out
        while True:
            rows = self._rows(
                "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY s LIMIT ?",
                (match, limit),
            )
            seen = self._visible([i for i, _ in rows])
            found = [(int(i), -float(s)) for i, s in rows if i in seen]
            if len(found) >= k or len(rows) < limit:  # enough, or every match
                return found[:k]
            limit *= 4

    def _post_filtered(self, search, k: int, where: Filter, whole_when_short: bool = False) -> list | None:
        """The ``k`` best hits that ``where`` lets through among ``POST_FILTER_TIMES * k`` of ``search`` (a
        ranking asked for that many, unfiltered; every chunk in a smaller index), or None when fewer pass and
        the ranking may hold more (``whole_when_short``: a ranking shorter than asked for holds every match, as
        the full text's does), when it would take over ``POST_FILTER_MOST`` candidates, or when the filter
        lets too few through to try (``_worth_trying``).

        A filter that lets a good share of the collection through (one of ten sources, a decade) is so served
        without gathering its chunk ids (at a million chunks, a decade's took 0.34 s, and searching a segment
        for 400,000 of them another 0.2 s). One that fell short is remembered: its next searches go straight
        to its ids.
        """
        wanted = min(POST_FILTER_TIMES * k, self.manifest["chunks"])
        if not wanted or wanted > POST_FILTER_MOST or where.article or not self._worth_trying(where, wanted, k):
            return None  # (an article filter: one article, or a few)
        hits = search(wanted)
        found: list[tuple[int, float]] = []
        for part in (hits[: 4 * k], hits[4 * k :]):  # the best first: a filter that lets a quarter through stops
            passing = self._passing(where, [i for i, _ in part])
            found += [hit for hit in part if hit[0] in passing]
            if len(found) >= k:
                break
        if len(found) >= k or wanted == self.manifest["chunks"] or (whole_when_short and len(hits) < wanted):
            return found[:k]
        with self._allowed_lock:
            _keep(self._short, where, None, SHORT_KEPT)
        return None

    def _worth_trying(self, where: Filter, wanted: int, k: int) -> bool:
        """Whether post-filtering ``wanted`` candidates may find k that ``where`` lets through: not when it
        fell short before, nor when fewer than k in ``wanted`` chunks pass (``_lets_too_few_through``, asked
        once a filter). A ranking of every chunk is exact: always worth it."""
        with self._allowed_lock:
            if where in self._short:
                return False
            if where in self._wide or wanted == self.manifest["chunks"]:
                return True
        short = self._lets_too_few_through(where, wanted // k)
        with self._allowed_lock:
            _keep(self._short if short else self._wide, where, None, SHORT_KEPT)
        return not short

    def _lets_too_few_through(self, where: Filter, times: int) -> bool:
        """Whether fewer than one chunk in ``times`` pass ``where``. Its articles are counted first, through
        their indexes and only as far as that share: when enough pass, no. Else its chunk ids are gathered as
        far as that share (articles hold chunks unevenly: one long book may hold most of a collection): when
        they are all, yes, and they are kept for the search that follows. At a million chunks a year's first
        search so skips both retrievers' unfiltered rankings (docs/benchmarks.md, "Tuning notes"). An index
        without those indexes (written by an earlier qa, until its next build): no."""
        if not self._counted:
            return False
        sql, params = self._condition(where)
        needed = -(-self.manifest["articles"] // times)
        rows = self._rows(
            f"SELECT count(*) FROM (SELECT 1 FROM articles a WHERE {_VISIBLE} AND {sql} LIMIT :needed)",
            {**params, "gen": self.gen, "needed": needed},
        )
        return rows[0][0] < needed and self._gathered(where, most=-(-self.manifest["chunks"] // times) - 1) is not None

    def _passing(self, where: Filter, ids: list[int]) -> set[int]:
        """Those of these chunk ids that ``where`` lets through."""
        if not ids:
            return set()
        sql, params = self._condition(where)
        rows = self._rows(
            # each looked up by id, in id order (SQLite's own plan for "c.id IN (...)" read the filter's
            # articles first: 8.6 s for a source at a million chunks)
            "SELECT c.id FROM json_each(:ids) j CROSS JOIN chunks c ON c.id = j.value "
            f"JOIN articles a ON a.row = c.article WHERE {sql}",
            {**params, "ids": json.dumps(sorted(ids))},
        )
        return {i for (i,) in rows}

    def _allowed(self, where: Filter) -> np.ndarray:
        """The chunk ids of this generation that ``where`` lets through; the last ``ALLOWED_KEPT`` filters'
        are kept (a user who sets a filter asks several questions with it)."""
        return self._gathered(where)[0]

    def _allowed_json(self, where: Filter) -> str:
        """``_allowed(where)`` as a JSON array, for SQLite's ``json_each`` (made once for a kept filter)."""
        entry = self._gathered(where)
        if entry[1] is None:
            entry[1] = json.dumps(entry[0].tolist())
        return entry[1]

    def _gathered(self, where: Filter, most: int | None = None) -> list | None:
        """[chunk ids, their JSON or None] of ``where``, kept or gathered, or None when over ``most`` pass; one
        thread gathers a filter, another that asks for it meanwhile (a search's other retriever) waits for it."""
        entry = self._kept(where)
        if entry is None:
            with self._gathering:
                entry = self._kept(where) or self._gather(where, most)
        return entry if entry is not None and (most is None or len(entry[0]) <= most) else None

    def _kept(self, where: Filter) -> list | None:
        with self._allowed_lock:
            if where in self._allowed_kept:
                self._allowed_kept.move_to_end(where)
                return self._allowed_kept[where]
        return None

    def _gather(self, where: Filter, most: int | None) -> list | None:
        """[chunk ids, None] of ``where`` read from the database, and kept; None (nothing kept) when over ``most``
        pass."""
        sql, params = self._condition(where)
        rows = self._rows(
            # the articles first (CROSS JOIN keeps that order): the filter is on them, an index holds it
            f"SELECT c.id FROM articles a CROSS JOIN chunks c ON c.article = a.row WHERE {_VISIBLE} AND {sql}"
            + ("" if most is None else " LIMIT :most + 1"),
            {**params, "gen": self.gen, "most": most},
        )
        if most is not None and len(rows) > most:
            return None
        entry = [np.array([i for (i,) in rows], dtype=np.int64), None]
        with self._allowed_lock:
            _keep(self._allowed_kept, where, entry, ALLOWED_KEPT)
        return entry

    def _condition(self, where: Filter) -> tuple[str, dict]:
        """``where`` as an SQL condition on the articles ``a``, and its parameters."""
        parts, params = ["1"], {}
        if where.sources:  # each spelling the index has of them (validate gave one), compared as the index sorts
            wanted = {s.casefold() for s in where.sources}
            spelled = [s for s in self.sources() if s.casefold() in wanted]
            params.update({f"s{n}": s for n, s in enumerate(spelled)})
            parts.append(f"a.source IN ({','.join(f':s{n}' for n in range(len(spelled)))})")
        if where.after:
            parts.append(f"{self._day} >= :after")
            params["after"] = where.after
        if where.before:
            parts.append(f"{self._day} <= :before")
            params["before"] = where.before
        if where.article and self._titles:  # each word whole in the title's words, as filters.title_has finds it
            found = " AND ".join(f"instr(a.title_key, :w{n})" for n in range(len(where.title_words)))
            parts.append(f"(a.id = :article OR ({found or '0'}))")
            params.update({f"w{n}": f" {w} " for n, w in enumerate(where.title_words)}, article=where.article)
        elif where.article:  # an index written before the column: each title read as searches go
            parts.append("(a.id = :article OR qa_title(a.title, :words))")
            params.update(article=where.article, words=" ".join(where.title_words))
        return " AND ".join(parts), params

    def sources(self) -> list[str]:
        """The distinct sources of this generation's articles (without the empty one), sorted; read once."""
        if self._sources is None:
            self._sources = [
                s
                for (s,) in self._rows(
                    f"SELECT DISTINCT a.source FROM articles a WHERE {_VISIBLE} AND a.source != '' ORDER BY a.source",
                    {"gen": self.gen},
                )
            ]
        return list(self._sources)

    def has_article(self, article: str) -> bool:
        """Whether an article of this generation has the id ``article``, or all its words in its title."""
        return len(self._allowed(Filter(article=article))) > 0  # kept: the search that follows asks again

    def _df(self, terms: list[str]) -> dict[str, int]:
        """How many chunks hold each of these index terms (the full text's own count, kept by builds)."""
        marks = ",".join("?" * len(terms))
        return dict(self._rows(f"SELECT term, df FROM terms WHERE term IN ({marks})", terms)) if terms else {}

    def _visible(self, ids: list[int]) -> set[int]:
        marks = ",".join("?" * len(ids))
        return {
            r[0]
            for r in self._rows(
                f"SELECT c.id FROM chunks c JOIN articles a ON a.row = c.article WHERE c.id IN ({marks}) "
                f"AND +a.added <= ? AND +a.removed > ?",
                [*ids, self.gen, self.gen],
            )
        }

    def vectors(self, ids: Iterable[int]) -> np.ndarray:
        """The stored vectors of the given chunk ids, in order."""
        ids = [int(i) for i in ids]
        out = np.zeros((len(ids), self.manifest["dim"]), dtype=np.float32)
        if not ids:
            return out
        where = dict(self._rows(f"SELECT id, segment FROM chunks WHERE id IN ({','.join('?' * len(ids))})", ids))
        by_segment: dict[int, list[int]] = {}
        for n, i in enumerate(ids):
            by_segment.setdefault(where[i], []).append(n)
        for seg_id, slots in by_segment.items():
            out[slots] = self._segments[seg_id].vectors(np.array([ids[n] for n in slots], dtype=np.int64))
        return out

    def sentences(self, ids: Iterable[int]) -> dict[int, tuple[list[tuple[int, int]], np.ndarray]]:
        """Stored sentences of the given chunks: chunk id -> (article-offset spans, unit vectors).

        Chunks built without sentence vectors (a model that doesn't mean-pool its tokens) are missing.
        """
        ids = list(ids)
        if not ids:
            return {}
        rows = self._rows(
            f"SELECT id, sentences FROM chunks WHERE id IN ({','.join('?' * len(ids))}) AND sentences IS NOT NULL",
            ids,
        )
        return {i: unpack_sentences(blob, self._books) for i, blob in rows}

    def chunks(self, ids: Iterable[int]) -> dict[int, ChunkRow]:
        """Chunk rows with their article metadata, by chunk id."""
        ids = list(ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._rows(
            "SELECT c.id, a.id, substr(a.text, c.start + 1, c.end - c.start), c.start, c.end, a.title, a.source, "
            f"a.date, a.url, {self._pages} FROM chunks c JOIN articles a ON a.row = c.article WHERE c.id IN ({marks})",
            ids,
        )
        return {r[0]: ChunkRow(*r[:-1], pages=_pages(r[-1], r[3], r[4])) for r in rows}

    def chunk_ids(self) -> list[int]:
        """The ids of every chunk of this generation, ascending (a million at 1M chunks: for checks)."""
        return [
            i
            for (i,) in self._rows(
                f"SELECT c.id FROM chunks c JOIN articles a ON a.row = c.article WHERE {_VISIBLE} ORDER BY c.id",
                {"gen": self.gen},
            )
        ]

    def article_hashes(self, ids: Sequence[str] | None = None) -> dict[str, str]:
        """Article id -> content hash of every article in this generation (of those of ``ids``)."""
        if ids is None:
            return dict(self._rows(f"SELECT a.id, a.hash FROM articles a WHERE {_VISIBLE}", {"gen": self.gen}))
        found = {}
        for n in range(0, len(ids), 500):
            part = list(ids[n : n + 500])
            found.update(
                self._rows(
                    f"SELECT a.id, a.hash FROM articles a WHERE a.id IN ({','.join('?' * len(part))}) "
                    "AND +a.added <= ? AND +a.removed > ?",
                    [*part, self.gen, self.gen],
                )
            )
        return found

    def articles_with_texts(self, texts: Iterable[str]) -> dict[str, list[str]]:
        """The indexed articles whose text is exactly one of ``texts``: text -> their ids (by an index
        on the texts' hashes, whatever the collection's size)."""
        texts = list(dict.fromkeys(texts))
        found: dict[str, list[str]] = {}
        for n in range(0, len(texts), 500):  # under SQLite's limit on parameters
            part = {text_key(t): t for t in texts[n : n + 500]}
            marks = ",".join("?" * len(part))
            for article_id, key, text in self._rows(
                f"SELECT a.id, a.text_key, a.text FROM articles a WHERE a.text_key IN ({marks}) "
                "AND +a.added <= ? AND +a.removed > ?",
                [*part, self.gen, self.gen],
            ):
                if part.get(key) == text:
                    found.setdefault(text, []).append(article_id)
        return found

    def article_text(self, article_id: str) -> str:
        rows = self._rows(
            f"SELECT a.text FROM articles a WHERE a.id = :id AND {_VISIBLE}", {"id": article_id, "gen": self.gen}
        )
        return rows[0][0] if rows else ""

    def size(self) -> int:
        """Bytes on disk of this generation's data directory."""
        total = 0
        for f in self.path.iterdir():
            with contextlib.suppress(FileNotFoundError):  # a build may be deleting what no generation needs
                total += f.stat().st_size if f.is_file() else 0
        return total

    def check(self) -> list[str]:
        """Full verification, reading every file: what is wrong, empty when nothing is."""
        problems: list[str] = []
        for part in (self._check_segments, self._check_database, self._check_articles, self._check_counts):
            try:
                problems += part()
            except CorruptIndexError as e:
                problems.append(str(e).split(". Rebuild it")[0])
        return list(dict.fromkeys(problems))

    def _check_segments(self) -> list[str]:
        found = []
        for seg_id, record in self._rows(
            "SELECT id, record FROM segments WHERE added <= :gen AND dropped > :gen", {"gen": self.gen}
        ):
            found += dense.verify(self.path / _segment_name(seg_id), json.loads(record))
        return found

    def _check_database(self) -> list[str]:
        db = self.path / "meta.sqlite"
        found = [f"{db}: {result}" for (result,) in self._rows("PRAGMA integrity_check") if result != "ok"]
        try:  # a read-only connection can't run FTS5's check: a connection of its own
            with contextlib.closing(sqlite3.connect(db)) as rw:
                rw.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 0)")
        except sqlite3.OperationalError as e:
            if "locked" not in str(e):
                found.append(f"{db}: the full-text index is damaged ({e})")
            # else a build holds the database: its full text is checked by the next `qa check`
        except sqlite3.DatabaseError as e:
            found.append(f"{db}: the full-text index is damaged ({e})")
        return found

    def _check_articles(self) -> list[str]:
        bad = [
            aid
            for aid, title, source, date, url, text, digest, pages in self._rows(
                f"SELECT a.id, a.title, a.source, a.date, a.url, a.text, a.hash, {self._pages} FROM articles a "
                f"WHERE {_VISIBLE}",
                {"gen": self.gen},
            )
            if Article("", title, text, source, date, url, pages=tuple(json.loads(pages or "[]"))).hash != digest
        ]
        return [f"{self.path / 'meta.sqlite'}: article {aid!r} does not match its hash" for aid in bad[:20]]

    def _check_counts(self) -> list[str]:
        chunks = self._rows(
            f"SELECT count(*) FROM chunks c JOIN articles a ON a.row = c.article WHERE {_VISIBLE}", {"gen": self.gen}
        )[0][0]
        live = sum(seg.live for seg in self._segments.values())
        if chunks == self.manifest["chunks"] == live:
            return []
        return [
            f"{self.path / 'meta.sqlite'}: generation {self.gen} records {self.manifest['chunks']} chunks, "
            f"its rows hold {chunks} and its vectors {live}"
        ]

    def _rows(self, sql: str, params: Sequence | dict = ()) -> list[tuple]:
        """The rows of a query; a damaged meta.sqlite is a CorruptIndexError that names it and the fix."""
        try:
            db = self._reader()
            try:
                return db.execute(sql, params).fetchall()
            finally:
                self._hand_back(db)
        except sqlite3.ProgrammingError:  # a closed connection or a bad query: a bug, not damage
            raise
        except sqlite3.DatabaseError as e:
            raise CorruptIndexError(
                f"{self.path / 'meta.sqlite'} is damaged ({e}). {_REBUILD.format(self.index_dir)}"
            ) from None

    def _reader(self) -> sqlite3.Connection:
        """A read connection of this Store's own: an idle one, a new one while fewer than ``READERS`` are
        open, else the first one handed back. (SQLite reads a WAL database from several connections at once,
        and Python lets go of the GIL while SQLite works: the full-text query no longer waits for the others.)"""
        with self._readers:
            while not self._idle and self._opened >= READERS and not self._closed:
                self._readers.wait()
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            if self._idle:
                return self._idle.pop()
            self._opened += 1
        try:
            return _add_functions(_connect_reading(self.path / "meta.sqlite"))
        except BaseException:
            with self._readers:
                self._opened -= 1
                self._readers.notify()
            raise

    def _hand_back(self, db: sqlite3.Connection) -> None:
        with self._readers:
            if self._closed:
                db.close()
            else:
                self._idle.append(db)
            self._readers.notify()

    def close(self) -> None:
        """Close its connections (one in use closes when its query ends); reading after raises."""
        with self._readers:
            self._closed = True
            while self._idle:
                self._idle.pop().close()
            self._readers.notify_all()


def _keep(kept: OrderedDict, key, value, most: int) -> None:
    """``kept[key] = value``, the oldest entries left out beyond ``most``."""
    kept[key] = value
    while len(kept) > most:
        kept.popitem(last=False)


def _connect_reading(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{database}?mode=ro", uri=True, check_same_thread=False)


def _add_functions(db: sqlite3.Connection) -> sqlite3.Connection:
    """``db`` with the functions that filters on indexes written before their columns call."""
    db.create_function("qa_day", 1, filters.day, deterministic=True)
    db.create_function("qa_title", 2, filters.title_has, deterministic=True)  # SQLite's LIKE folds ASCII only
    return db


def current_generation(index_dir: Path) -> str | None:
    """What ``CURRENT`` names ("data-000002/gen-000009"), or None when it is missing or names nothing."""
    try:
        name = (Path(index_dir) / "CURRENT").read_bytes().decode("ascii", "replace").strip()
    except OSError:  # missing (no index yet), or not a file: Store.open tells the two apart
        return None
    return name if _CURRENT.fullmatch(name) else None


def _no_generation(index_dir: Path) -> Exception:
    current = index_dir / "CURRENT"
    old = current.read_bytes().decode("ascii", "replace").strip() if current.is_file() else ""
    if re.fullmatch(r"gen-\d+", old) and (index_dir / old / "manifest.json").is_file():
        return IndexMismatchError(
            f"{index_dir}/ was written in index format 1 by an older qa; this qa reads format {FORMAT}. "
            f"Upgrade it with `qa build --full --index {index_dir}` (your articles are read again and re-embedded)."
        )
    if current.exists():
        return CorruptIndexError(
            f"{index_dir}/CURRENT does not name a generation (data-NNNNNN/gen-NNNNNN). {_REBUILD.format(index_dir)}"
        )
    return NoIndexError(f"No index at {index_dir}/. Run `qa build seeds/ --index {index_dir}` first.")


class Writer:
    """Writes the next generation. ``base``: the live generation to change, in place; None: a new data
    directory, written from scratch (resumed from a killed build's batches when its ``manifest`` matches).

    Call ``reuse`` for articles that a killed build already embedded, ``remove`` and ``add`` for the
    changes, then ``commit``. Added chunks are written out every ``FLUSH_CHUNKS`` as they come.
    """

    def __init__(self, index_dir: Path, manifest: dict, base: Store | None = None, dense_index: str = "auto") -> None:
        self.index_dir = Path(index_dir)
        self.index_dir.mkdir(parents=True, exist_ok=True)
        self.manifest = dict(manifest)
        self.dense_index = dense.check_setting(dense_index)
        self.base = base
        key = json.dumps({k: manifest.get(k) for k in ("model", "dim", "chunk_tokens", "overlap_sentences")})
        if base is not None:
            self.data, self.fresh = base.path, False
            self.gen = base.gen + 1
        else:
            self.data, self.fresh = self._fresh_directory(key), True
            live = current_generation(self.index_dir)
            self.gen = int(live.split("-")[-1]) + 1 if live else 1
        new = not (self.data / "meta.sqlite").exists()
        self._db = sqlite3.connect(self.data / "meta.sqlite", isolation_level=None)
        self._db.execute("PRAGMA synchronous = FULL")
        if new:
            self._db.executescript(SCHEMA)
            self._set_state("key", key)
        else:
            self._db.execute("PRAGMA journal_mode = WAL")
            upgrade(self._db)
        committed = self._db.execute("SELECT max(gen) FROM generations").fetchone()[0]
        self.committed = committed if committed is not None else -1
        # Rows a killed build of this data directory added: kept to be reused, relabelled as this build's.
        self._pending = {
            (aid, digest): row
            for row, aid, digest in self._db.execute(
                "SELECT row, id, hash FROM articles WHERE added > ?", (self.committed,)
            )
        }
        self._db.execute("BEGIN")
        self._db.execute("UPDATE articles SET added = ? WHERE added > ?", (self.gen, self.committed))
        self._db.execute("UPDATE segments SET added = ? WHERE added > ?", (self.gen, self.committed))
        self._db.execute("COMMIT")
        self.reused = 0
        self._claimed: set[int] = set()
        self._removed: list[str] = []
        self._buffer: list[tuple] = []  # (article, chunks, vectors, sentences) not yet written out
        self._buffered = 0
        self.next_id = int(self._state("next_chunk_id", "0"))

    def _fresh_directory(self, key: str) -> Path:
        """The directory of a full rebuild: a killed one's with the same model and chunking, or a new one."""
        for old in sorted(self.index_dir.glob(".next-data-*")):
            try:
                db = sqlite3.connect(f"file:{old / 'meta.sqlite'}?mode=ro", uri=True)
                try:
                    same = db.execute("SELECT value FROM state WHERE key = 'key'").fetchone() == (key,)
                finally:
                    db.close()
            except sqlite3.DatabaseError:
                same = False
            if same:
                return old
            shutil.rmtree(old, ignore_errors=True)
        nums = [int(p.name[-6:]) for p in self.index_dir.glob("data-*") if p.name[-6:].isdigit()]
        path = self.index_dir / f".next-data-{max(nums, default=0) + 1:06d}"
        path.mkdir()
        return path

    def reuse(self, article) -> bool:
        """Take ``article`` as a killed build embedded it, if one did (same id and content): True if so."""
        row = self._pending.get((article.id, article.hash))
        if row is None:
            return False
        self._claimed.add(row)
        self.reused += self._db.execute("SELECT count(*) FROM chunks WHERE article = ?", (row,)).fetchone()[0]
        return True

    def remove(self, article_ids: Iterable[str]) -> None:
        """Drop these articles from the next generation (marked as it commits)."""
        self._removed += list(article_ids)

    def add(self, article, chunks, vectors: np.ndarray, sentences: Sequence | None = None) -> None:
        """Add one article (an ``articles.Article``), its chunks and their vectors.

        ``sentences``: per chunk, None or (spans in the article, one vector per span).
        """
        self._buffer.append((article, chunks, np.asarray(vectors, dtype=np.float32), sentences))
        self._buffered += len(chunks)
        if self._buffered >= FLUSH_CHUNKS:
            self.flush()

    def flush(self) -> None:
        """Write out the buffered articles as rows and one segment, committed: a build killed after
        this resumes from them."""
        if not self._buffer:
            return
        first = self.next_id
        ids = np.arange(first, first + self._buffered, dtype=np.int64)
        vectors = [v for _, cs, v, _ in self._buffer if len(cs)]
        seg_id = None
        if len(ids):
            seg_id, writer = self._segment_writer(len(ids))
            writer.add(ids, np.concatenate(vectors))
            record = writer.finish()
        self._db.execute("BEGIN")
        if seg_id is not None:
            self._db.execute("INSERT INTO segments VALUES (?,?,?,?)", (seg_id, json.dumps(record), self.gen, NEVER))
        book = self._book()
        next_id, texts = first, []
        for article, chunks, _, sentences in self._buffer:
            row = self._db.execute(
                "INSERT INTO articles (id, title, source, date, url, path, hash, text_key, text, added, removed, "
                "day, pages, title_key) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    article.id,
                    article.title,
                    article.source,
                    article.date,
                    article.url,
                    article.path,
                    article.hash,
                    text_key(article.text),
                    article.text,
                    self.gen,
                    NEVER,
                    filters.day(article.date),
                    json.dumps(article.pages) if article.pages else None,
                    filters.title_key(article.title),
                ),
            ).lastrowid
            self._claimed.add(row)
            self._db.executemany(
                "INSERT INTO chunks VALUES (?,?,?,?,?,?,?)",
                [
                    (next_id + n, row, c.index, c.start, c.end, seg_id, pack_sentences(found, c.start, book))
                    for n, (c, found) in enumerate(zip(chunks, _padded(sentences, len(chunks)), strict=True))
                ],
            )
            self._db.executemany(
                "INSERT INTO chunks_fts(rowid, text) VALUES (?,?)",
                [(next_id + n, c.text) for n, c in enumerate(chunks)],
            )
            texts += [c.text for c in chunks]
            next_id += len(chunks)
        count_terms(self._db, texts, +1)
        self.next_id = next_id
        self._set_state("next_chunk_id", str(next_id))
        self._db.execute("COMMIT")
        self._buffer, self._buffered = [], 0
        give_back_memory()
        pause_point("batch")

    def _book(self) -> tuple[int, np.ndarray]:
        """The codebook for the buffered sentences: the data directory's well-trained one, else one trained
        on them (inside the open transaction)."""
        row = self._db.execute(
            "SELECT id, limits FROM codebooks WHERE sample >= ? ORDER BY id LIMIT 1", (BOOK_SAMPLE,)
        ).fetchone()
        if row:
            return row[0], np.frombuffer(row[1], dtype=np.float32)
        vectors = [v for _, _, _, ss in self._buffer for found in ss or () if found is not None for v in found[1]]
        if not vectors:
            return 0, np.zeros(2 * self.manifest["dim"], dtype=np.float32)
        limits = train_book(np.asarray(vectors, dtype=np.float32))
        book_id = self._db.execute(
            "INSERT INTO codebooks (sample, limits) VALUES (?, ?)", (len(vectors), limits.tobytes())
        ).lastrowid
        return book_id, limits

    def _segment_writer(self, count: int) -> tuple[int, dense.SegmentWriter]:
        """A new segment's id (taken at once: a killed build never reuses it) and its writer."""
        seg_id = int(self._state("next_segment", "1"))
        self._set_state("next_segment", str(seg_id + 1))
        kind = dense.choose(self.dense_index, count)
        return seg_id, dense.SegmentWriter(self.data / _segment_name(seg_id), self.manifest["dim"], kind)

    def commit(self) -> Path:
        """Make the next generation live; returns its data directory."""
        self.flush()
        removing = self._rows_of(self._removed)
        unclaimed = [r for r in self._pending.values() if r not in self._claimed]  # a killed build's, unwanted
        removed_chunks = self._chunks_of(removing)
        gone = {**removed_chunks, **self._chunks_of(unclaimed)}
        written = [(group, *self._merged(group, gone)) for group in self._plan_merges(gone)]
        pause_point("writing")
        db = self._db
        db.execute("BEGIN")
        gen = {"gen": self.gen}
        self._forget(unclaimed)
        db.executemany(
            "INSERT OR REPLACE INTO tombstones VALUES (?,?,?)",
            [(i, seg, self.gen) for i, seg in gone.items() if seg is not None],
        )
        db.executemany("UPDATE articles SET removed = ? WHERE row = ?", [(self.gen, r) for r in removing])
        for group, seg_id, record, moved in written:
            db.executemany("UPDATE segments SET dropped = ? WHERE id = ?", [(self.gen, s) for s in group])
            if seg_id is None:
                continue
            db.execute("INSERT INTO segments VALUES (?,?,?,?)", (seg_id, json.dumps(record), self.gen, NEVER))
            db.execute(
                "UPDATE chunks SET segment = ? WHERE id IN (SELECT value FROM json_each(?))",
                (seg_id, json.dumps(moved)),
            )
        segments = [
            (s, json.loads(r)["kind"])
            for s, r in db.execute(
                "SELECT id, record FROM segments WHERE added <= :gen AND dropped > :gen ORDER BY id", gen
            )
        ]
        # Counted from what changed, not by reading every row: an update costs what it changes.
        new = db.execute("SELECT count(*) FROM articles WHERE added = ?", (self.gen,)).fetchone()[0]
        new_chunks = db.execute(
            "SELECT count(*) FROM chunks WHERE article IN (SELECT row FROM articles WHERE added = ?)", (self.gen,)
        ).fetchone()[0]
        before = self.base.manifest if self.base is not None else {"articles": 0, "chunks": 0}
        counts = (
            before["articles"] + new - len(removing),
            before["chunks"] + new_chunks - len(removed_chunks),
        )
        self.manifest.update(
            format=FORMAT,
            articles=counts[0],
            chunks=counts[1],
            built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            dense_index=self.dense_index,
            segments=segments,
            ann=describe(segments),
        )
        db.execute("INSERT INTO generations VALUES (?, ?)", (self.gen, json.dumps(self.manifest, sort_keys=True)))
        if self.fresh:
            db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        db.close()
        data = self.data
        if self.fresh:
            dense.fsync(self.data)
            data = self.index_dir / self.data.name.removeprefix(".next-")
            os.rename(self.data, data)
            dense.fsync(self.index_dir)
            pause_point("renamed")
        previous = current_generation(self.index_dir)
        _write_durably(self.index_dir / "CURRENT", f"{data.name}/gen-{self.gen:06d}\n")
        pause_point("swapped")
        collect_garbage(self.index_dir, previous)
        return data

    def _rows_of(self, article_ids: list[str]) -> list[int]:
        """The rows of these articles that the generation before this one holds."""
        found = []
        for aid in dict.fromkeys(article_ids):
            found += [
                r
                for (r,) in self._db.execute(
                    # (unary +: look rows up by id, never by the generations, which nearly all rows share)
                    "SELECT row FROM articles WHERE id = ? AND +added < ? AND +removed = ?",
                    (aid, self.gen, NEVER),
                )
            ]
        return found

    def _chunks_of(self, rows: list[int]) -> dict[int, int | None]:
        """Chunk id -> segment of the chunks of these article rows."""
        found: dict[int, int | None] = {}
        for row in rows:
            found.update(self._db.execute("SELECT id, segment FROM chunks WHERE article = ?", (row,)).fetchall())
        return found

    def _forget(self, rows: list[int]) -> None:
        """Delete article rows that no generation can see, with their chunks and their full text."""
        for row in rows:
            _delete_article(self._db, row)

    def _live_segments(self) -> list[tuple[int, dict]]:
        return [
            (s, json.loads(r))
            for s, r in self._db.execute(
                "SELECT id, record FROM segments WHERE added <= :gen AND dropped > :gen ORDER BY id", {"gen": self.gen}
            )
        ]

    def _plan_merges(self, gone: dict[int, int | None]) -> list[list[int]]:
        """Groups of segments to merge into one: this build's batches; any segment of the wrong kind for
        its size or with more hidden vectors than visible ones; any size tier of ``MERGE_FACTOR`` segments.
        ``gone``: chunks this build hides (chunk id -> segment)."""
        live = self._live_segments()
        hidden = dict(self._db.execute("SELECT segment, count(*) FROM tombstones GROUP BY segment").fetchall())
        for seg in gone.values():
            hidden[seg] = hidden.get(seg, 0) + 1
        alive = {s: rec["count"] - hidden.get(s, 0) for s, rec in live}
        groups: list[list[int]] = []
        for s, rec in live:
            wrong_kind = _wrong_kind(self.dense_index, rec, alive[s])
            if alive[s] > 0 and (wrong_kind or alive[s] * 2 < rec["count"]):
                groups.append([s])
        taken = {s for group in groups for s in group}
        new = [s for s, _ in live if s not in taken and self._added_now(s)]
        if len(new) > 1:
            groups.append(new)
            taken.update(new)
        tiers: dict[int, list[int]] = {}
        for s, _ in live:
            if s not in taken and alive[s] > 0:
                tiers.setdefault(len(str(alive[s])), []).append(s)
        groups += [group for group in tiers.values() if len(group) >= MERGE_FACTOR]
        # A segment left with nothing visible is dropped: merged into nothing.
        groups += [[s] for s, _ in live if alive[s] <= 0 and s not in taken]
        return groups

    def _added_now(self, seg_id: int) -> bool:
        return self._db.execute("SELECT added FROM segments WHERE id = ?", (seg_id,)).fetchone()[0] == self.gen

    def _merged(self, group: list[int], gone: dict[int, int | None]) -> tuple[int | None, dict, list[int]]:
        """Write one segment of the visible vectors of ``group``: (its id, its record, the chunk ids it
        holds); (None, {}, []) when none is visible."""
        sources = []
        for seg_id in group:
            record = json.loads(self._db.execute("SELECT record FROM segments WHERE id = ?", (seg_id,)).fetchone()[0])
            skip = {i for (i,) in self._db.execute("SELECT chunk FROM tombstones WHERE segment = ?", (seg_id,))}
            skip.update(i for i, seg in gone.items() if seg == seg_id)
            segment = dense.Segment(self.data / _segment_name(seg_id), record["kind"], np.array(sorted(skip)))
            sources.append(segment)
        total = sum(seg.live for seg in sources)
        if not total:
            return None, {}, []
        seg_id, writer = self._segment_writer(total)
        moved = []
        for segment in sources:
            for ids, vectors in segment.blocks(segment.excluded):
                writer.add(ids, vectors)
                moved += ids.tolist()
        return seg_id, writer.finish(), moved

    def _state(self, key: str, default: str) -> str:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _set_state(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, value))

    def abort(self) -> None:
        """Stop without a new generation. Batches already written stay, for the next build to reuse."""
        with contextlib.suppress(Exception):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        with contextlib.suppress(Exception):
            self._db.close()


def describe(segments: list[tuple[int, str]]) -> str:
    """What dense search uses, for people: "ivf:nlist=4000,nprobe=32,rescore=100 (1 segment) + flat (2 segments)"."""
    kinds: dict[str, int] = {}
    for _, kind in segments:
        kinds[kind] = kinds.get(kind, 0) + 1
    return " + ".join(f"{k} ({n} segment{'s' if n > 1 else ''})" for k, n in kinds.items()) or "none"


def collect_garbage(index_dir: Path, previous: str | None) -> None:
    """Delete what neither the live generation nor ``previous`` (which readers may still be opening) can
    see: rows and segments of their data directory, other data directories, killed builds' leftovers."""
    live = current_generation(index_dir)
    keep = {n.split("/")[0] for n in (live, previous) if n}
    for old in [*index_dir.glob("data-*"), *index_dir.glob("gen-*"), *index_dir.glob(".next-data-*")]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    if live is None:
        return
    # What the previous generation can see must stay; after a full rebuild nothing older than the live
    # one shares its data directory.
    same = previous and previous.split("/")[0] == live.split("/")[0]
    oldest = int((previous if same else live).split("-")[-1])
    data = index_dir / live.split("/")[0]
    db = sqlite3.connect(data / "meta.sqlite", isolation_level=None)
    try:
        db.execute("PRAGMA synchronous = FULL")
        db.execute("BEGIN")
        for (row,) in db.execute("SELECT row FROM articles WHERE removed <= ?", (oldest,)).fetchall():
            _delete_article(db, row)
        dropped = [  # with those merged in the generation that wrote them: no generation saw them
            (s, json.loads(r))
            for s, r in db.execute("SELECT id, record FROM segments WHERE dropped <= ? OR dropped = added", (oldest,))
        ]
        for seg_id, _ in dropped:
            db.execute("DELETE FROM tombstones WHERE segment = ?", (seg_id,))
            db.execute("DELETE FROM segments WHERE id = ?", (seg_id,))
        db.execute("DELETE FROM generations WHERE gen < ?", (oldest,))
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        db.close()
    for seg_id, record in dropped:
        for path in dense.segment_files(data / _segment_name(seg_id), record["kind"]):
            path.unlink(missing_ok=True)


def recover(index_dir: Path) -> None:
    """After a build was killed between its last commit and the swap of CURRENT: finish the swap
    (that generation is whole). Called by ``lock`` before anything else."""
    live = current_generation(index_dir)
    if live is None:
        return
    data = index_dir / live.split("/")[0]
    try:
        db = sqlite3.connect(f"file:{data / 'meta.sqlite'}?mode=ro", uri=True)
        try:
            newest = db.execute("SELECT max(gen) FROM generations").fetchone()[0]
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return  # the build that follows finds it unusable and rebuilds
    if newest is not None and newest > int(live.split("-")[-1]):
        _write_durably(index_dir / "CURRENT", f"{data.name}/gen-{newest:06d}\n")


def pack_sentences(found, chunk_start: int, book: tuple[int, np.ndarray]) -> bytes | None:
    """One chunk's sentences as stored: their count, spans (relative to the chunk) and vectors in 4-bit
    codes of ``book`` (its id, and its per-dimension minimum and range: ``train_book``).

    4 bits a dimension (192 bytes a sentence, a quarter of float16) lose nothing measurable: SQuAD v1.1
    dev hit@1 0.8418 and answer sentence 0.7201 against float16's 0.8414 and 0.7201 (docs/benchmarks.md).
    """
    if found is None:
        return None
    spans, vectors = found
    book_id, limits = book
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(spans), -1)
    d = vectors.shape[1]
    low, width = limits[:d], limits[d:]
    q = np.floor(15 * np.clip((vectors - low) / np.where(width > 0, width, 1), 0, 1)).astype(np.uint8)
    if d % 2:
        q = np.concatenate([q, np.zeros((len(q), 1), dtype=np.uint8)], axis=1)
    codes = q[:, 0::2] | (q[:, 1::2] << 4)
    rel = np.asarray([(s - chunk_start, e - chunk_start) for s, e in spans], dtype="<i4").reshape(-1)
    return struct.pack("<IiII", len(spans), chunk_start, d, book_id) + rel.tobytes() + codes.tobytes()


def unpack_sentences(blob: bytes, books: dict[int, np.ndarray]) -> tuple[list[tuple[int, int]], np.ndarray]:
    n, start, d, book_id = struct.unpack_from("<IiII", blob)
    rel = np.frombuffer(blob, dtype="<i4", count=2 * n, offset=16).reshape(n, 2) + start
    codes = np.frombuffer(blob, dtype=np.uint8, count=n * ((d + 1) // 2), offset=16 + 8 * n).reshape(n, -1)
    q = np.empty((n, codes.shape[1] * 2), dtype=np.float32)
    q[:, 0::2], q[:, 1::2] = codes & 15, codes >> 4
    limits = books[book_id]
    vectors = limits[:d] + (q[:, :d] + 0.5) / 15 * limits[d:]
    return [(int(s), int(e)) for s, e in rel], vectors


def train_book(vectors: np.ndarray) -> np.ndarray:
    """A 4-bit codebook for ``vectors``: each dimension's minimum and range, widened when trained on few
    (a thousand vectors fix a dimension's range well; a seed article's few dozen do not)."""
    low, high = vectors.min(axis=0), vectors.max(axis=0)
    if len(vectors) < BOOK_SAMPLE:
        margin = (high - low) * 0.5 + 1e-3
        low, high = low - margin, high + margin
    return np.concatenate([low, high - low]).astype(np.float32)


def _delete_article(db: sqlite3.Connection, row: int) -> None:
    """Delete an article row, its chunks and their full text (a contentless FTS5 table is told the text)."""
    text = db.execute("SELECT text FROM articles WHERE row = ?", (row,)).fetchone()[0]
    chunks = db.execute("SELECT id, start, end FROM chunks WHERE article = ?", (row,)).fetchall()
    db.executemany(
        "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', ?, ?)",
        [(i, text[s:e]) for i, s, e in chunks],
    )
    count_terms(db, [text[s:e] for _, s, e in chunks], -1)
    db.execute("DELETE FROM chunks WHERE article = ?", (row,))
    db.execute("DELETE FROM articles WHERE row = ?", (row,))


class Terms:
    """Question words as the full-text index spells them (its own tokenizer and stemmer, run by an
    in-memory FTS5 table), and the query of a big index: the question's rarest words that it holds."""

    def __init__(self) -> None:
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.executescript(
            f"CREATE VIRTUAL TABLE q USING fts5(t, tokenize='{TOKENIZE}');"
            "CREATE VIRTUAL TABLE q_instance USING fts5vocab(q, instance);"
            "CREATE VIRTUAL TABLE q_row USING fts5vocab(q, row);"
        )
        self._lock = threading.Lock()
        self._spelled: dict[str, list[str]] = {}

    def spell(self, words: list[str]) -> dict[str, list[str]]:
        """Each word's index terms (one, or several for a word the tokenizer splits)."""
        new = [w for w in dict.fromkeys(words) if w not in self._spelled]
        if new:
            found = self._terms(new)
            if len(self._spelled) > 100_000:
                self._spelled.clear()
            for n, w in enumerate(new):
                self._spelled[w] = found.get(n, [])
        return {w: self._spelled[w] for w in words}

    def analyse(self, texts: Sequence[str]) -> list[str]:
        """Each text as the index's terms in order, joined by spaces: what another engine's plain
        whitespace tokenizer reads exactly as FTS5 reads the text (the Milvus backend's BM25 field).

        >>> TERMS.analyse(["The runners were running, naïvely!", ""])
        ['the runner were run naiv', '']
        """
        found = self._terms(texts)
        return [" ".join(found.get(n, [])) for n in range(len(texts))]

    def _terms(self, texts: Sequence[str]) -> dict[int, list[str]]:
        """The terms of each of ``texts`` (by its position; none: absent), in order."""
        found: dict[int, list[str]] = {}
        with self._lock:
            self._db.executemany("INSERT INTO q(rowid, t) VALUES (?, ?)", enumerate(texts))
            for doc, term in self._db.execute("SELECT doc, term FROM q_instance ORDER BY doc, offset"):
                found.setdefault(doc, []).append(term)
            self._db.execute("DELETE FROM q")
        return found

    def counts(self, texts: list[str]) -> list[tuple[str, int]]:
        """(term, how many of ``texts`` hold it)."""
        with self._lock:
            self._db.executemany("INSERT INTO q(rowid, t) VALUES (?, ?)", enumerate(texts))
            rows = self._db.execute("SELECT term, doc FROM q_row").fetchall()
            self._db.execute("DELETE FROM q")
        return rows

    def match(self, question: str, df, chunks: int) -> str:
        """An FTS5 OR-query of the question's words that the index holds, rarest first: at most
        ``RARE_TERMS``, none held by more than ``COMMON_SHARE`` of the chunks unless no other is."""
        words = [w for w in dict.fromkeys(re.findall(r"\w+", question.lower())) if w not in STOPWORDS]
        spelled = self.spell(words)
        counts = df(sorted({t for terms in spelled.values() for t in terms}))
        held = sorted((min(counts.get(t, 0) for t in spelled[w]), n, w) for n, w in enumerate(words) if spelled[w])
        held = [h for h in held if h[0] > 0][:RARE_TERMS]
        kept = [h for h in held if h[0] <= COMMON_SHARE * chunks] or held[:1]
        return " OR ".join(f'"{w}"' for _, _, w in sorted(kept, key=lambda h: h[1]))


TERMS = Terms()  # the process's: its spellings are the same for every index


def count_terms(db: sqlite3.Connection, texts: list[str], sign: int) -> None:
    """Add (``sign`` +1) or take away (-1) ``texts``' document counts in the ``terms`` table."""
    for n in range(0, len(texts), 2000):
        counts = TERMS.counts(texts[n : n + 2000])
        db.executemany(
            "INSERT INTO terms VALUES (?, ?) ON CONFLICT(term) DO UPDATE SET df = df + excluded.df",
            [(term, sign * count) for term, count in counts],
        )
        if sign < 0:
            db.executemany("DELETE FROM terms WHERE term = ? AND df <= 0", [(term,) for term, _ in counts])


def _has_column(db: sqlite3.Connection, name: str) -> bool:
    return any(row[1] == name for row in db.execute("PRAGMA table_info(articles)"))


def upgrade(db: sqlite3.Connection) -> None:
    """Give the database of an index written by an earlier qa what this one's builds and filters use (the
    next build does it; each step once, then there is nothing to do): the articles' days (date filters) and
    title words (article filters), their page starts (PDFs: NULL in older rows), and the indexes that let
    each filter read only the articles it names. ``db``: in autocommit mode."""
    db.create_function("qa_day", 1, filters.day, deterministic=True)
    db.create_function("qa_title_key", 1, filters.title_key, deterministic=True)
    db.execute("BEGIN")
    for column, value in (("day", "qa_day(date)"), ("title_key", "qa_title_key(title)"), ("pages", None)):
        if not _has_column(db, column):  # added in place (SQLite rewrites nothing), then filled in
            db.execute(f"ALTER TABLE articles ADD COLUMN {column} TEXT")
            if value:
                db.execute(f"UPDATE articles SET {column} = {value}")
    # sources and their days in one index (a source and a year at a million chunks: 3 ms to gather, not 63)
    db.execute("CREATE INDEX IF NOT EXISTS articles_source_day ON articles(source, day, added, removed)")
    db.execute("DROP INDEX IF EXISTS articles_source")  # (source, added, removed), by qa before 2026-12
    db.execute("CREATE INDEX IF NOT EXISTS articles_day ON articles(day, added, removed)")
    db.execute("CREATE INDEX IF NOT EXISTS articles_title ON articles(title_key, id, added, removed)")
    db.execute("COMMIT")


def _pages(stored: str | None, start: int, end: int) -> tuple[tuple[int, int], ...]:
    """The page numbers and starts that a chunk from ``start`` to ``end`` needs, from its article's stored
    page starts (JSON; None when it is not a PDF)."""
    return pages_around(_page_starts(stored), start, end) if stored else ()


@functools.lru_cache(maxsize=64)
def _page_starts(stored: str) -> tuple[int, ...]:
    """An article's page starts, read once for the passages of one PDF that a search returns together."""
    return tuple(json.loads(stored))


def text_key(text: str) -> int:
    """A 63-bit key of a text, for finding copies by an index."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big") >> 1


def _wrong_kind(setting: str, record: dict, alive: int) -> bool:
    """Whether a segment (its ``record``, ``alive`` vectors visible) should be rewritten under the setting:
    under ``auto`` only a flat one grown past exact search's range (none is rewritten back as deletions
    shrink it); under a named kind, one written under another setting."""
    if setting == "auto":
        return dense.choose(setting, alive).name == "ivf" and not record["kind"].startswith("ivf")
    return str(dense.choose(setting, record["count"])) != record["kind"]


def _padded(sentences: Sequence | None, n: int) -> list:
    return list(sentences or [None] * n)[:n] + [None] * max(0, n - len(sentences or ()))


def _segment_name(seg_id: int) -> str:
    return f"seg-{seg_id:06d}"


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
            for stale in index_dir.glob(".tmp-*"):  # left by builds of qa before format 2
                shutil.rmtree(stale, ignore_errors=True)
            recover(index_dir)
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


_REBUILD = "Rebuild it with `qa build --full --index {0}`."


def give_back_memory() -> None:
    """Return the freed heap to the system (glibc only): a batch's tokens and activations are freed between
    what the build keeps, and without this the heap they leave grows with every batch (bench/buildmem.py: 2.3 GB at
    23,000 chunks without it)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 -- musl has none
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


def pause_point(stage: str) -> None:
    """Test hook: with QA_TEST_PAUSE_AT=<stage> a build says so on stderr and sleeps here, so a test
    can kill it at a known point. Stages: embedding, batch, writing, renamed, swapped."""
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
    dense.fsync(path.parent)
