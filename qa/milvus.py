"""The Milvus backend: an index kept in Milvus, searched by Milvus's own dense and BM25 full-text search.

``QA_BACKEND=milvus`` with ``QA_MILVUS_URI``: a file path is Milvus Lite (in this process), an
``http://host:19530`` URI a Milvus server (``QA_MILVUS_TOKEN`` for one that needs it). The only module
that imports pymilvus (``pip install -e ".[milvus]"``).

Layout, for the collection name N (``QA_MILVUS_COLLECTION``, default ``qa``), as in the local store:

- ``N_meta``: the row ``current`` ({"collection", "gen", "manifest"}) names the live generation, and
  the row ``state`` what builds keep (the next chunk id and data collection, a full rebuild under way).
  Upserting ``current`` (one row) is what swaps a generation in.
- ``N_data_NNNNNN``: one row per chunk: its text, its terms (the text as the local index's full-text
  tokenizer and stemmer spell it, ``store.TERMS``; Milvus's BM25 function reads them into ``sparse``), vector,
  offsets, sentence vectors, its article's metadata, the pages it spans (of a PDF), and the generations that
  added and removed it. A reader of generation G filters ``added <= G and removed > G``: a build adds its
  rows under G+1 and marks what it removes with G+1, then upserts ``current``; readers see all of it or none of it.
- A full rebuild (another model or chunking, ``--full``) writes a new data collection; ``current`` names it
  once it is whole. A killed build's rows are taken up again by the next build, matched by article id and
  hash, as the local store's batches are.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import filters
from .backends import milvus_uri
from .errors import (
    CorruptIndexError,
    FilterError,
    IndexLockedError,
    IndexMismatchError,
    NoIndexError,
    StoreError,
    quoted,
)
from .filters import Filter
from .pdf import pages_around
from .store import TERMS, ChunkRow, lock, pause_point
from .text import query_terms

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger(__name__)

FORMAT = "milvus-1"
NEVER = 2**62  # "removed" of a row no generation has removed
VARCHAR = 65_535  # Milvus's longest VARCHAR, in bytes
FLUSH_ROWS = 2_000  # chunks per insert
IN_LIST = 1_000  # ids per `id in [...]` filter
# A filtered dense search that finds fewer than it asked for scores the filter's rows exactly, up to this many
# (an approximate index starves on a narrow filter: Milvus Lite's HNSW found 7 of 100 asked for in a month of
# a 100,000-chunk collection; docs/benchmarks.md, "Filtered search on Milvus Lite at 100,000 chunks").
EXACT_MOST = 5_000
ARTICLES_KEPT = 256  # article filters whose answer (an article matches, or none) an index remembers
CLAIM_S = 600  # a build's claim on a collection holds this long unless renewed (a killed build's runs out)
RENEW_S = 60  # a running build renews its claim this often
# The terms field is already spelled by qa (store.TERMS: FTS5's unicode61 and Porter stemmer), so Milvus
# only splits it into words. Milvus Lite offers no English stemmer: its own analysis, with the "stemmer"
# and "asciifolding" filters asked for, matched neither "run" to "running" nor "cafe" to "café".
ANALYZER = {"tokenizer": "standard"}


class MilvusError(StoreError):
    """Milvus can't be reached, refuses the token, or its Lite file is held by another process."""


_clients: dict[tuple[str, str], object] = {}
_clients_lock = threading.Lock()
_loaded: set[tuple[str, str]] = set()  # (uri, collection) loaded by this process
_loaded_lock = threading.Lock()


def client(uri: str, token: str = ""):
    """One MilvusClient per (uri, token) in this process (Milvus Lite opens its file once)."""
    with _clients_lock:
        found = _clients.get((uri, token))
        if found is None:
            found = _clients[(uri, token)] = _connect(uri, token)
        return found


def release(uri: str | None = None) -> None:
    """Close this process's clients (of ``uri``; None: all): Milvus Lite lets another process open the file."""
    with _clients_lock:
        for key in [k for k in _clients if uri is None or k[0] == uri]:
            with contextlib.suppress(Exception):
                _clients.pop(key).close()
            with _loaded_lock:
                _loaded.difference_update({k for k in _loaded if k[0] == key[0]})
            if _lite(key[0]):  # its server runs in this process until released
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(key[0])


def _lite(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "tcp://", "unix:"))


def _connect(uri: str, token: str):
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise MilvusError(
            'The Milvus backend needs pymilvus and milvus-lite: pip install -e ".[milvus]". '
            "Or use the local index: QA_BACKEND=local."
        ) from None
    lite = _lite(uri)
    if lite:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        # Milvus Lite serves no timestamps: pymilvus's iterator says so on every use, and the in-process
        # server logs a traceback for the call it does not implement. Both are harmless: not shown.
        logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_no_timestamps)
        logging.getLogger("grpc._server").addFilter(_no_timestamps)
    try:
        return MilvusClient(uri=uri, token=token, timeout=15)
    except Exception as e:  # pymilvus raises its own kinds, and grpc's
        raise MilvusError(_why(uri, e, lite)) from None


def _why(uri: str, error: Exception, lite: bool) -> str:
    text = str(getattr(error, "message", "") or error)
    refused = _refused(error)
    if refused is not None:  # pymilvus reports a refused token at connect as "server unavailable"
        text = refused
    if lite and "Open local milvus failed" in text:
        return (
            f"The Milvus Lite file {uri} is open in another process (a running `python app.py`?). "
            "Milvus Lite serves one process: stop that one, or build through the app (`qa build` hands "
            "its build to a running app)."
        )
    if re.search(r"\b(auth\w*|token|credentials?|password|unauthenticated)\b", text, re.IGNORECASE):
        return (
            f"Milvus at {uri} refused the token ({text[:200]}). "
            "Set QA_MILVUS_TOKEN to a valid user:password or API key."
        )
    if isinstance(error, OSError) or "connect" in text.lower() or "unavailable" in text.lower():
        return f"Milvus at {uri} can't be reached ({text[:200]}). Start it, or set QA_MILVUS_URI to where it runs."
    return f"Milvus at {uri} refused a request ({text[:200]})."


def _refused(error: BaseException | None) -> str | None:
    """The server's words when ``error``, or what caused it, is gRPC's "unauthenticated": what a Milvus
    server answers a wrong token or password with."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:  # pymilvus raises `e from e`: a cycle
        seen.add(id(error))
        code = getattr(error, "code", None)
        if callable(code) and getattr(code(), "name", "") in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            details = getattr(error, "details", None)
            return f"{code().name.lower()}: {details() if callable(details) else error}"
        error = error.__cause__ or error.__context__
    return None


def _no_timestamps(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return "mvccTs" not in message and "Method not implemented" not in message


@contextlib.contextmanager
def _calls(uri: str) -> Iterator[None]:
    """Milvus's errors as MilvusError, saying what to do."""
    try:
        yield
    except StoreError:
        raise
    except Exception as e:
        if type(e).__module__.startswith(("pymilvus", "grpc")):
            raise MilvusError(_why(uri, e, False)) from None
        raise


@dataclass(frozen=True)
class Milvus:
    """The ``Backend`` of a Milvus collection (``backends.Backend``)."""

    uri: str
    token: str
    name: str
    index_dir: Path  # holds the build lock, as for the local index

    @classmethod
    def of(cls, settings: Settings) -> Milvus:
        return cls(milvus_uri(settings), settings.milvus_token, settings.milvus_collection, Path(settings.index_dir))

    @property
    def where(self) -> str:
        return f"Milvus collection {self.name} at {self.uri}"

    @property
    def client(self):
        return client(self.uri, self.token)

    @property
    def meta(self) -> str:
        return f"{self.name}_meta"

    def current(self) -> dict | None:
        """The ``current`` row: the live generation, or None when nothing was built."""
        return self._row("current")

    def state(self) -> dict:
        return self._row("state") or {}

    def _row(self, key: str) -> dict | None:
        c = self.client
        with _calls(self.uri):
            if not c.has_collection(self.meta):
                return None
            self.load(self.meta)
            rows = c.query(self.meta, filter=f'key == "{key}"', output_fields=["value"], consistency_level="Strong")
        if not rows:
            return None
        try:
            return json.loads(rows[0]["value"])
        except ValueError:
            raise CorruptIndexError(f"{self.where}: its {key} row is damaged. {self.rebuild}") from None

    def put(self, key: str, value: dict) -> None:
        c = self.client
        with _calls(self.uri):
            if not c.has_collection(self.meta):
                schema = c.create_schema(auto_id=False)
                schema.add_field("key", _type("VARCHAR"), is_primary=True, max_length=64)
                schema.add_field("value", _type("VARCHAR"), max_length=VARCHAR)
                schema.add_field("unused", _type("FLOAT_VECTOR"), dim=2)  # Milvus wants a vector in every collection
                index = c.prepare_index_params()
                index.add_index("unused", index_type="FLAT", metric_type="L2")
                c.create_collection(self.meta, schema=schema, index_params=index, consistency_level="Strong")
            c.upsert(self.meta, [{"key": key, "value": json.dumps(value), "unused": [0.0, 0.0]}])

    def load(self, collection: str) -> None:
        """Load ``collection`` for searching and querying, if it is not: Milvus starts with them released."""
        with _calls(self.uri), _loaded_lock:
            if (self.uri, collection) in _loaded:
                return
            state = str(self.client.get_load_state(collection).get("state", ""))
            if "Loaded" not in state:
                self.client.load_collection(collection)
            _loaded.add((self.uri, collection))

    @property
    def rebuild(self) -> str:
        return f"Rebuild it with `qa build --full --backend milvus --milvus-uri {self.uri}`."

    def open(self) -> MilvusIndex:
        current = self.current()
        if current is None:
            raise NoIndexError(
                f"No index in {self.where}. Run `qa build seeds/ --backend milvus --milvus-uri {self.uri}` first."
            )
        manifest = current.get("manifest")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise IndexMismatchError(
                f"{self.where} holds an index of format {quoted(manifest and manifest.get('format'))}; "
                f"this qa reads {FORMAT}. {self.rebuild}"
            )
        with _calls(self.uri):
            if not self.client.has_collection(current["collection"]):
                raise CorruptIndexError(
                    f"{self.where}: its collection {current['collection']} is missing. {self.rebuild}"
                )
        self.load(current["collection"])
        return MilvusIndex(self, current["collection"], int(current["gen"]), manifest)

    def live(self) -> str | None:
        current = self.current()
        return None if current is None else _generation(current["collection"], int(current["gen"]))

    def writer(self, manifest: dict, base: MilvusIndex | None, dense_index: str) -> MilvusWriter:
        return MilvusWriter(self, {**manifest, "dense_index": dense_index}, base)

    def fields(self, collection: str) -> set[str]:
        """``collection``'s field names. One made by an earlier qa lacks the later ones (``pages`` of PDF
        passages, ``terms``, ``day`` and ``title_key`` of filters), and Milvus Lite can't add a field to a
        collection: ``qa build --full`` makes a new one."""
        with _calls(self.uri):
            return {f["name"] for f in self.client.describe_collection(collection)["fields"]}

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One build at a time: the index directory's lock for builds on this machine, and a claim in
        Milvus for builds on others that share the server (each with an index directory of its own)."""
        with lock(self.index_dir), self._claim():
            yield

    @contextlib.contextmanager
    def _claim(self) -> Iterator[None]:
        """Milvus has no compare-and-set, so a build writes its claim (a ``claim-...`` row of the meta
        collection), then reads every claim: it goes on only when no other is live, else it takes its
        own back and stops. Of two builds that claim at once, the one that reads second sees the other's
        claim, so both may stop (the next try goes on) but never both go on. A claim is live until its
        ``until`` (renewed every ``RENEW_S`` while the build runs), or, from this machine, while its
        process runs."""
        me = f"claim-{uuid.uuid4().hex}"
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.put(me, {**holder, "until": time.time() + CLAIM_S})
        others = {key: claim for key, claim in self._claims().items() if key != me}
        stale = [key for key, claim in others.items() if not _live(claim)]
        live = [claim for key, claim in others.items() if key not in stale]
        if live or stale:
            with _calls(self.uri):
                self.client.delete(self.meta, filter=f"key in {json.dumps(stale + ([me] if live else []))}")
        if live:
            c = live[0]
            raise IndexLockedError(
                f"{self.where} is being built by process {c.get('pid')} on {c.get('host')} (since {c.get('since')}). "
                "Wait for that build to finish, then try again; if it was killed, its claim runs out at "
                f"{time.strftime('%H:%M:%S', time.localtime(float(c.get('until', 0))))}."
            )
        done = threading.Event()

        def renew() -> None:
            while not done.wait(RENEW_S):
                with contextlib.suppress(StoreError):  # a missed renewal leaves 9 more minutes
                    self.put(me, {**holder, "until": time.time() + CLAIM_S})

        renewer = threading.Thread(target=renew, name="qa-milvus-claim", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join()
            with _calls(self.uri):
                self.client.delete(self.meta, filter=f"key == {_text(me)}")

    def _claims(self) -> dict[str, dict]:
        self.load(self.meta)
        with _calls(self.uri):
            rows = self.client.query(
                self.meta, filter='key like "claim-%"', output_fields=["key", "value"], consistency_level="Strong"
            )
        claims = {}
        for row in rows:
            with contextlib.suppress(ValueError):
                claims[row["key"]] = json.loads(row["value"])
        return claims

    def create(self, collection: str, dim: int) -> None:
        """A data collection for chunks of ``dim``-dimensional vectors."""
        from pymilvus import Function, FunctionType

        c = self.client
        schema = c.create_schema(auto_id=False)
        schema.add_field("id", _type("INT64"), is_primary=True)
        schema.add_field("article", _type("VARCHAR"), max_length=4096)
        for name in ("title", "source", "date", "url"):
            schema.add_field(name, _type("VARCHAR"), max_length=VARCHAR)
        schema.add_field("day", _type("VARCHAR"), max_length=10)  # the date as YYYY-MM-DD, "" unreadable: filters
        # The title's words (filters.words), each between spaces: an article filter matches whole words.
        schema.add_field("title_key", _type("VARCHAR"), max_length=VARCHAR)
        schema.add_field("hash", _type("VARCHAR"), max_length=64)
        schema.add_field("text_key", _type("VARCHAR"), max_length=64)
        schema.add_field("start", _type("INT64"))
        schema.add_field("end", _type("INT64"))
        schema.add_field("text", _type("VARCHAR"), max_length=VARCHAR)
        schema.add_field("terms", _type("VARCHAR"), max_length=VARCHAR, enable_analyzer=True, analyzer_params=ANALYZER)
        schema.add_field("sentences", _type("VARCHAR"), max_length=VARCHAR)
        schema.add_field("pages", _type("VARCHAR"), max_length=VARCHAR)  # JSON (number, start) pairs; "" if none
        schema.add_field("added", _type("INT64"))
        schema.add_field("removed", _type("INT64"))
        schema.add_field("vec", _type("FLOAT_VECTOR"), dim=dim)
        schema.add_field("sparse", _type("SPARSE_FLOAT_VECTOR"))
        schema.add_function(
            Function(
                name="bm25", function_type=FunctionType.BM25, input_field_names=["terms"], output_field_names=["sparse"]
            )
        )
        index = c.prepare_index_params()
        index.add_index("vec", index_type="AUTOINDEX", metric_type="IP")
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        with _calls(self.uri):
            c.create_collection(collection, schema=schema, index_params=index, consistency_level="Strong")


def _type(name: str):
    from pymilvus import DataType

    return getattr(DataType, name)


def _live(claim: dict) -> bool:
    """Whether a build's claim still holds: before its ``until``, and, made on this machine, while its
    process runs."""
    if not isinstance(claim, dict) or float(claim.get("until", 0)) <= time.time():
        return False
    if claim.get("host") == socket.gethostname():
        try:
            os.kill(int(claim.get("pid", 0)), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, OverflowError):
            return True
    return True


def _generation(collection: str, gen: int) -> str:
    return f"{collection}/gen-{gen:06d}"


def _visible(gen: int) -> str:
    return f"added <= {gen} and removed > {gen}"


def _text(value: str) -> str:
    """A string as a Milvus filter literal."""
    return json.dumps(value)


CHUNK_FIELDS = ["id", "article", "text", "start", "end", "title", "source", "date", "url"]


class MilvusIndex:
    """One generation of a Milvus index (``backends.Index``). Thread-safe: pymilvus's client is."""

    def __init__(self, backend: Milvus, collection: str, gen: int, manifest: dict) -> None:
        self.backend, self.collection, self.gen, self.manifest = backend, collection, gen, manifest
        self.generation = _generation(collection, gen)
        self.path = backend.where
        self._c = backend.client
        self._filter = _visible(gen)
        self._sources: list[str] | None = None
        self._fields = backend.fields(collection)
        self._pages = "pages" in self._fields
        # asked before each search with an article filter, and a generation's rows never change: the answers
        # are kept (a query over every row's title words took 0.8 s on Milvus Lite at 100,000 chunks)
        self.has_article = functools.lru_cache(ARTICLES_KEPT)(self._has_article)

    def _query(self, filter: str, fields: list[str], limit: int | None = None) -> list[dict]:
        with _calls(self.backend.uri):
            kw = {"limit": limit} if limit else {}
            return self._c.query(self.collection, filter=filter, output_fields=fields, consistency_level="Strong", **kw)

    def _iterate(self, filter: str, fields: list[str]) -> Iterator[dict]:
        with _calls(self.backend.uri):
            it = self._c.query_iterator(self.collection, batch_size=4096, filter=filter, output_fields=fields)
            try:
                while rows := it.next():
                    yield from rows
            finally:
                it.close()

    def _by_ids(self, ids: Sequence[int], fields: list[str]) -> dict[int, dict]:
        found = {}
        for n in range(0, len(ids), IN_LIST):
            part = ids[n : n + IN_LIST]
            for row in self._query(f"id in {json.dumps(list(part))}", ["id", *fields]):
                found[int(row["id"])] = row
        return found

    def dense(
        self, vector: np.ndarray, k: int, exact: bool = False, where: Filter = filters.NONE
    ) -> list[tuple[int, float]]:
        """Milvus's own index search (AUTOINDEX): ``exact`` (``QA_DENSE_SEARCH=exact``) is not offered here;
        on Milvus Lite at 2,737 chunks it found 98% of the exact top 100 (docs/benchmarks.md). A filtered
        search that finds fewer than ``k`` scores the filter's rows exactly, when they are few enough."""
        if k <= 0:
            return []
        vector = np.asarray(vector, dtype=np.float32)
        hits = self._search(vector.tolist(), "vec", "IP", k, where)
        if where and len(hits) < k:
            return self._scored(vector, k, where) or hits
        return hits

    def _scored(self, vector: np.ndarray, k: int, where: Filter) -> list[tuple[int, float]] | None:
        """The ``k`` best of the rows ``where`` lets through, each scored exactly; None when over ``EXACT_MOST``."""
        rows = self._query(self._condition(where), ["id", "vec"], limit=EXACT_MOST + 1)
        if len(rows) > EXACT_MOST:
            return None
        scores = np.array([r["vec"] for r in rows], dtype=np.float32).reshape(len(rows), self.manifest["dim"]) @ vector
        return [(int(rows[n]["id"]), float(scores[n])) for n in np.argsort(-scores, kind="stable")[:k]]

    def lexical(self, query: str, k: int, where: Filter = filters.NONE) -> list[tuple[int, float]]:
        words = query_terms(query)  # as the local index asks FTS5: stopwords left out
        if "terms" not in self._fields:  # made before the terms field: Milvus analyses the words
            terms = words
        else:
            terms = list(dict.fromkeys(t for spelled in TERMS.spell(words).values() for t in spelled))
        if k <= 0 or not terms:
            return []
        hits = self._search(" ".join(terms), "sparse", "BM25", k, where)
        # Milvus Lite gives BM25 as a negative distance, a server as a positive score: best first either way.
        return [(i, abs(score)) for i, score in hits]

    def _condition(self, where: Filter) -> str:
        """This generation's rows that ``where`` lets through, as a Milvus filter expression."""
        parts = [self._filter]
        if (where.after or where.before or where.article) and not {"day", "title_key"} <= self._fields:
            raise FilterError(
                f"{self.collection} was built before qa could filter by date or article. "
                "Rebuild it with `qa build --full --backend milvus`."
            )
        if where.sources:
            parts.append(f"source in {json.dumps(list(where.sources))}")
        if where.after:
            parts.append(f'day >= {_text(where.after)} and day != ""')
        if where.before:
            parts.append(f'day <= {_text(where.before)} and day != ""')
        if where.article:
            # LIKE reads "_" as any one character: escaped, it is itself ("%" and "\\" are in no word)
            like = [" ".join(("%", w.replace("_", "\\_"), "%")) for w in where.title_words]
            words = " and ".join(f"title_key like {_text(pattern)}" for pattern in like)
            parts.append(f"(article == {_text(where.article)} or ({words}))")
        return " and ".join(parts)

    def sources(self) -> list[str]:
        """This generation's sources: its manifest's list (builds keep it), or, in a collection built before
        that, read from every row once."""
        if self._sources is None:
            listed = self.manifest.get("article_sources")
            if listed is None:
                listed = sorted({r["source"] for r in self._iterate(self._filter, ["source"])} - {""})
            self._sources = list(listed)
        return list(self._sources)

    def _has_article(self, article: str) -> bool:
        return bool(self._query(self._condition(Filter(article=article)), ["id"], limit=1))

    def _search(self, query, field: str, metric: str, k: int, where: Filter) -> list[tuple[int, float]]:
        """(chunk id, Milvus's distance) of this generation's ``k`` best rows for ``query`` in ``field``."""
        with _calls(self.backend.uri):
            hits = self._c.search(
                self.collection,
                data=[query],
                anns_field=field,
                limit=min(k, 16_384),  # Milvus's most
                filter=self._condition(where),
                search_params={"metric_type": metric},
                consistency_level="Strong",
            )[0]
        return [(int(h["id"]), float(h["distance"])) for h in hits]

    def vectors(self, ids: Iterable[int]) -> np.ndarray:
        ids = [int(i) for i in ids]
        rows = self._by_ids(ids, ["vec"])
        out = np.zeros((len(ids), self.manifest["dim"]), dtype=np.float32)
        for n, i in enumerate(ids):
            out[n] = rows[i]["vec"]
        return out

    def sentences(self, ids: Iterable[int]) -> dict[int, tuple[list[tuple[int, int]], np.ndarray]]:
        rows = self._by_ids([int(i) for i in ids], ["sentences"])
        return {i: unpack(r["sentences"], self.manifest["dim"]) for i, r in rows.items() if r["sentences"]}

    def chunks(self, ids: Iterable[int]) -> dict[int, ChunkRow]:
        rows = self._by_ids([int(i) for i in ids], CHUNK_FIELDS[1:] + (["pages"] if self._pages else []))
        return {
            i: ChunkRow(*(r[f] for f in CHUNK_FIELDS), pages=tuple(map(tuple, json.loads(r.get("pages") or "[]"))))
            for i, r in rows.items()
        }

    def chunk_ids(self) -> list[int]:
        return sorted(int(r["id"]) for r in self._iterate(self._filter, ["id"]))

    def article_hashes(self, ids: Sequence[str] | None = None) -> dict[str, str]:
        if ids is None:
            return {r["article"]: r["hash"] for r in self._iterate(self._filter, ["article", "hash"])}
        found = {}
        ids = list(ids)
        for n in range(0, len(ids), IN_LIST):
            where = f"article in {json.dumps(ids[n : n + IN_LIST])} and {self._filter}"
            found.update({r["article"]: r["hash"] for r in self._query(where, ["article", "hash"])})
        return found

    def articles_with_texts(self, texts: Iterable[str]) -> dict[str, list[str]]:
        keys = {text_key(t): t for t in texts}
        found: dict[str, set[str]] = {}
        names = list(keys)
        for n in range(0, len(names), IN_LIST):
            where = f"text_key in {json.dumps(names[n : n + IN_LIST])} and {self._filter}"
            for r in self._query(where, ["article", "text_key"]):
                found.setdefault(keys[r["text_key"]], set()).add(r["article"])
        return {t: sorted(ids) for t, ids in found.items()}

    def article_text(self, article_id: str) -> str:
        """The article stitched from its chunks (they overlap or meet; a gap between two is one space)."""
        rows = sorted(
            self._query(f"article == {_text(article_id)} and {self._filter}", ["start", "end", "text"]),
            key=lambda r: r["start"],
        )
        text, end = "", None
        for r in rows:
            if end is None:
                text, end = r["text"], r["end"]
            elif r["end"] > end:
                text += (" " * max(0, r["start"] - end)) + r["text"][max(0, end - r["start"]) :]
                end = r["end"]
        return text

    def size(self) -> int:
        return 0  # Milvus keeps its own files; `qa info` says so

    def check(self) -> list[str]:
        """The counts and the rows of this generation: every visible row has a vector of the model's size."""
        problems = []
        count = self._query(self._filter, ["count(*)"])[0]["count(*)"]
        if count != self.manifest["chunks"]:
            problems.append(
                f"{self.collection} holds {count} chunks of generation {self.gen}; "
                f"its manifest says {self.manifest['chunks']}"
            )
        articles = set()
        for r in self._iterate(self._filter, ["id", "article", "vec"]):
            articles.add(r["article"])
            if len(r["vec"]) != self.manifest["dim"]:
                problems.append(
                    f"chunk {r['id']} has a vector of {len(r['vec'])} dimensions, not {self.manifest['dim']}"
                )
        if len(articles) != self.manifest["articles"]:
            problems.append(
                f"{self.collection} holds {len(articles)} articles; its manifest says {self.manifest['articles']}"
            )
        return problems

    def close(self) -> None:
        pass  # the client is shared by the process


class MilvusWriter:
    """Writes the next generation of a Milvus index (``backends.IndexWriter``)."""

    def __init__(self, backend: Milvus, manifest: dict, base: MilvusIndex | None) -> None:
        self.backend, self.base = backend, base
        self._c = backend.client
        current = backend.current()
        state = backend.state()
        self.gen = (int(current["gen"]) if current else 0) + 1
        self.manifest = dict(manifest)
        key = json.dumps({k: manifest.get(k) for k in ("model", "dim", "chunk_tokens", "overlap_sentences")})
        if base is not None:
            self.collection = base.collection
        elif (
            state.get("building", {}).get("key") == key
            and state["building"]["collection"] != (current or {}).get("collection")
            and self._exists(state["building"]["collection"])
        ):
            self.collection = state["building"]["collection"]  # a killed full rebuild: resumed
        else:
            number = int(state.get("next_collection", 1))
            self.collection = f"{backend.name}_data_{number:06d}"
            if self._exists(self.collection):
                with _calls(backend.uri):
                    self._c.drop_collection(self.collection)
            backend.create(self.collection, manifest["dim"])
            state = {**state, "next_collection": number + 1, "building": {"collection": self.collection, "key": key}}
            backend.put("state", state)
        backend.load(self.collection)
        fields = backend.fields(self.collection)
        self._pages, self._terms = "pages" in fields, "terms" in fields
        self._told_pages = False
        self._state = state
        self.next_id = int(state.get("next_id", 0))
        # What a killed build of this generation left: its added rows to reuse, its removal marks to undo.
        self._pending: dict[tuple[str, str], list[int]] = {}
        self._pending_sources: dict[tuple[str, str], str] = {}
        index = MilvusIndex(backend, self.collection, self.gen, manifest)
        for r in index._iterate(f"added == {self.gen}", ["id", "article", "hash", "source"]):
            self._pending.setdefault((r["article"], r["hash"]), []).append(int(r["id"]))
            self._pending_sources[(r["article"], r["hash"])] = r["source"]
        marked = [int(r["id"]) for r in index._iterate(f"removed == {self.gen}", ["id"])]
        self._mark(marked, NEVER)
        self._claimed: set[tuple[str, str]] = set()
        self._removed: list[str] = []
        self._rows: list[dict] = []
        self._articles_added = 0
        self._sources: set[str] = set()  # of the articles this build added
        self.reused = 0

    def _exists(self, collection: str) -> bool:
        with _calls(self.backend.uri):
            return self._c.has_collection(collection)

    def reuse(self, article) -> bool:
        found = self._pending.get((article.id, article.hash))
        if found is None:
            return False
        self._claimed.add((article.id, article.hash))
        self.reused += len(found)
        self._articles_added += 1
        self._sources.add(self._pending_sources[(article.id, article.hash)])
        return True

    def remove(self, article_ids: Iterable[str]) -> None:
        self._removed += list(article_ids)

    def add(self, article, chunks, vectors: np.ndarray, sentences: Sequence | None = None) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        key = text_key(article.text)
        self._articles_added += 1
        self._sources.add(article.source)
        if article.pages and not self._pages and not self._told_pages:
            self._told_pages = True
            log.warning(
                "%s was built before qa kept the pages of PDFs: passages of PDFs added now have no page number. "
                "`qa build --full` gives them one.",
                self.backend.where,
            )
        spelled = TERMS.analyse([c.text for c in chunks]) if self._terms else []
        for n, c in enumerate(chunks):
            pages = {"pages": _packed_pages(article.pages, c.start, c.end)} if self._pages else {}
            terms = {"terms": _cut(spelled[n])} if self._terms else {}
            self._rows.append(
                {
                    **pages,
                    "id": self.next_id + len(self._rows),
                    "article": article.id,
                    "title": article.title,
                    "source": article.source,
                    "date": article.date,
                    "day": filters.day(article.date) or "",
                    "title_key": filters.title_key(article.title),
                    "url": article.url,
                    "hash": article.hash,
                    "text_key": key,
                    "start": int(c.start),
                    "end": int(c.end),
                    "text": _fits(c.text, article.id),
                    **terms,
                    "sentences": pack(sentences[n] if sentences else None),
                    "added": self.gen,
                    "removed": NEVER,
                    "vec": vectors[n].tolist(),
                }
            )
        if len(self._rows) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        self.next_id += len(self._rows)
        self._state = {**self._state, "next_id": self.next_id}
        self.backend.put("state", self._state)  # ids reserved before they are used: never given twice
        with _calls(self.backend.uri):
            self._c.insert(self.collection, self._rows)
        self._rows = []
        pause_point("batch")

    def _mark(self, ids: list[int], removed: int) -> None:
        with _calls(self.backend.uri):
            for n in range(0, len(ids), FLUSH_ROWS):
                rows = [{"id": i, "removed": removed} for i in ids[n : n + FLUSH_ROWS]]
                self._c.upsert(self.collection, rows, partial_update=True)

    def commit(self) -> str:
        self.flush()
        pause_point("writing")
        index = MilvusIndex(self.backend, self.collection, self.gen, self.manifest)
        stale = [i for pair, ids in self._pending.items() if pair not in self._claimed for i in ids]
        with _calls(self.backend.uri):
            for n in range(0, len(stale), IN_LIST):
                self._c.delete(self.collection, filter=f"id in {json.dumps(stale[n : n + IN_LIST])}")
        removed_articles, left = 0, set()  # left: the sources of removed rows, which may have no article now
        if self.base is not None and self._removed:
            before = _visible(self.gen - 1)
            ids = []
            for n in range(0, len(self._removed), IN_LIST):
                part = json.dumps(self._removed[n : n + IN_LIST])
                rows = index._query(f"article in {part} and {before}", ["id", "article", "source"])
                ids += [int(r["id"]) for r in rows]
                removed_articles += len({r["article"] for r in rows})
                left |= {r["source"] for r in rows}
            self._mark(ids, self.gen)
        sources = self._sources | set(self.base.sources() if self.base is not None else ())
        for source in left - self._sources:
            if not index._query(f"source == {_text(source)} and {_visible(self.gen)}", ["id"], limit=1):
                sources.discard(source)
        chunks = index._query(_visible(self.gen), ["count(*)"])[0]["count(*)"]
        articles = (self.base.manifest["articles"] - removed_articles if self.base else 0) + self._articles_added
        self.manifest.update(
            format=FORMAT,
            chunks=int(chunks),
            articles=int(articles),
            built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            backend=self.backend.where,
            segments=[],
            ann="milvus AUTOINDEX",
            article_sources=sorted(sources - {""}),
        )
        with _calls(self.backend.uri):
            self._c.flush(self.collection)
        previous = self.backend.current()
        self.backend.put("current", {"collection": self.collection, "gen": self.gen, "manifest": self.manifest})
        pause_point("swapped")
        self._state = {k: v for k, v in self._state.items() if k != "building"}
        self.backend.put("state", self._state)
        self._collect_garbage(previous)
        return self.collection

    def _collect_garbage(self, previous: dict | None) -> None:
        """Rows no reader of this generation or the previous one sees, and data collections neither names."""
        keep = {self.collection} | ({previous["collection"]} if previous else set())
        with _calls(self.backend.uri):
            self._c.delete(self.collection, filter=f"removed <= {self.gen - 1}")
            for name in self._c.list_collections():
                if name.startswith(f"{self.backend.name}_data_") and name not in keep:
                    self._c.drop_collection(name)

    def abort(self) -> None:
        self._rows = []  # what was inserted stays for the next build to take up or delete


def _fits(text: str, article_id: str) -> str:
    """A passage's text as a VARCHAR holds it: one over 65,535 bytes (a "word" of thousands of characters
    is one token) is cut there, with a warning; its offsets, and so its place in the article, stay whole."""
    cut = _cut(text)
    if cut != text:
        log.warning("a passage of %s is longer than Milvus holds (%d bytes): cut", article_id, VARCHAR)
    return cut


def _cut(text: str) -> str:
    """``text``'s first 65,535 bytes, the most a VARCHAR holds, ending at a whole character."""
    data = text.encode("utf-8", "surrogatepass")
    return text if len(data) <= VARCHAR else data[:VARCHAR].decode("utf-8", "ignore")


def _packed_pages(starts: Sequence[int], start: int, end: int) -> str:
    """The pages a chunk spans, as stored: JSON (page number, start offset) pairs, "" when not from a PDF.

    >>> _packed_pages([0, 50, 90], 60, 100), _packed_pages([], 0, 10)
    ('[[2, 50], [3, 90]]', '')
    """
    return json.dumps(pages_around(starts, start, end)) if starts else ""


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def pack(found) -> str:
    """A chunk's (sentence spans, unit vectors) as stored: JSON spans and 8-bit codes, "" when none or too long."""
    if found is None:
        return ""
    spans, vectors = found
    codes = np.clip(np.round(np.asarray(vectors, dtype=np.float32) * 127), -127, 127).astype(np.int8)
    text = json.dumps({"s": [[int(a), int(b)] for a, b in spans], "v": base64.b64encode(codes.tobytes()).decode()})
    return text if len(text) <= VARCHAR else ""


def unpack(text: str, dim: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    record = json.loads(text)
    vectors = np.frombuffer(base64.b64decode(record["v"]), dtype=np.int8).reshape(-1, dim).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    return [(a, b) for a, b in record["s"]], vectors
