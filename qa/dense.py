"""Dense vectors on disk: immutable segments searched by inner product. The only module that touches FAISS.

A segment is three files written once and never changed::

    seg-000007.faiss    the searchable index: ``flat`` (exact, IndexFlatIP) or ``ivf`` (IVF lists of
                        8-bit scalar codes, memory-mapped; its candidates are re-scored exactly)
    seg-000007.ids      the chunk ids of its rows, ascending (numpy .npy, memory-mapped)
    seg-000007.f16      ``ivf:rescore=N`` only: the vectors in float16, to re-score the N best candidates
                        exactly (memory-mapped; 768 bytes a vector, twice the codes)

Which kind a segment gets is chosen by its size (``choose``): exact search is fast enough
below ``EXACT_UP_TO`` vectors (docs/benchmarks.md, "Dense search by size").
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

EXACT_UP_TO = 150_000
# A filtered search scores the vectors it lets through one by one up to this many per segment; above, an IVF
# searches its lists for them only (a flat index is exact either way): at 1M, 4x faster from 40,000 on, with
# the recall of an unfiltered search (docs/benchmarks.md, "Tuning notes").
FILTER_EXACT_UP_TO = 2_000
TRAIN_MOST = 200_000  # vectors an IVF's lists are trained on, at most
KINDS = ("flat", "ivf")
# nlist, nprobe 0: chosen by size. rescore 0: scores from the 8-bit codes (within ~0.002 of the cosine), no
# float16 copy: re-scoring gained 0.006-0.011 recall@10 at 1M for 768 bytes a vector (docs/benchmarks.md).
_DEFAULTS = {"flat": {}, "ivf": {"nlist": 0, "nprobe": 0, "rescore": 0}}
_BLOCK = 65_536  # rows per block when reading a segment whole


@dataclass(frozen=True)
class Kind:
    """A kind of segment and its parameters, as a setting spells it: ``flat``, ``ivf`` or
    ``ivf:nlist=4096,nprobe=512,rescore=100`` (``nlist``, ``nprobe`` 0: chosen by size)."""

    name: str
    params: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Kind:
        name, _, rest = str(text).strip().partition(":")
        if name not in KINDS:
            raise ValueError(
                f"Unknown dense index kind {text!r}: use auto, flat, or ivf (e.g. ivf:nlist=4096,nprobe=32)."
            )
        params = dict(_DEFAULTS[name])
        for item in filter(None, rest.split(",")):
            key, _, value = item.partition("=")
            if key.strip() not in params or not re.fullmatch(r"\d+", value.strip()):
                known = ", ".join(f"{k}=N" for k in params) or "none"
                raise ValueError(f"Bad parameter {item!r} for dense index kind {name!r} (parameters: {known}).")
            params[key.strip()] = int(value)
        return cls(name, tuple(sorted(params.items())))

    def get(self, key: str) -> int:
        return dict(self.params)[key]

    def __str__(self) -> str:
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in self.params) if self.params else "")


def check_setting(text: str) -> str:
    """``text`` if it is ``auto`` or a valid kind; else ValueError."""
    if str(text).strip() != "auto":
        Kind.parse(text)
    return str(text).strip()


def choose(setting: str, count: int) -> Kind:
    """The kind of a segment of ``count`` vectors under the setting (``auto``: exact up to ``EXACT_UP_TO``)."""
    if setting == "auto":
        kind = Kind.parse("flat" if count <= EXACT_UP_TO else "ivf")
    else:
        kind = Kind.parse(setting)
    if kind.name == "ivf":
        # About 4 √n lists, a power of two; FAISS wants 39 training points per list at least.
        lists = kind.get("nlist") or 2 ** round(math.log2(4 * math.sqrt(max(count, 1))))
        lists = max(1, min(lists, count // 39 or 1))
        probes = kind.get("nprobe") or max(32, lists // 8)  # recall@10 0.96 at 1M (docs/benchmarks.md)
        params = {**dict(kind.params), "nlist": lists, "nprobe": min(probes, lists)}
        kind = Kind("ivf", tuple(sorted(params.items())))
    return kind


class SegmentWriter:
    """Writes one segment of ``kind`` from blocks of (ids, unit vectors), holding little in memory:
    a flat index grows block by block; an ``ivf`` one streams its float16 vectors to disk, then
    trains on a sample of them and takes them in block by block."""

    def __init__(self, stem: Path, d: int, kind: Kind) -> None:
        self.stem, self.d, self.kind = stem, d, kind
        self._ids: list[np.ndarray] = []
        self.count = 0
        if kind.name == "flat":
            self._index = faiss.IndexFlatIP(d)
            self._f16 = None
        else:
            self._f16 = open(stem.with_suffix(".f16"), "wb")

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        self._ids.append(ids)
        self.count += len(ids)
        if self._f16 is None:
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        else:  # streamed to disk: an IVF is trained once all are in
            self._f16.write(np.ascontiguousarray(vectors, dtype=np.float16).tobytes())

    def finish(self) -> dict:
        """Write the index and the ids, fsync every file; returns the segment's record: kind, count,
        and each file's size and sha256."""
        index = self._index if self._f16 is None else self._ivf()
        faiss.write_index(index, str(self.stem.with_suffix(".faiss")))
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        with open(self.stem.with_suffix(".ids"), "wb") as f:
            f.write(np.stack([ids, ids[order], order.astype(np.int64)]).astype("<i8").tobytes())
        files = segment_files(self.stem, self.kind)
        for p in files:
            fsync(p)
        return {
            "kind": str(self.kind),
            "count": self.count,
            "files": {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in files},
        }

    def _ivf(self):
        self._f16.close()
        kept = self.kind.get("rescore") > 0
        lists = self.kind.get("nlist")
        # Codes of the vectors themselves, not of their distance to the list's centre: better recall here.
        index = faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(self.d), self.d, lists, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT, False
        )
        sample = min(self.count, max(40 * lists, 50_000), TRAIN_MOST)
        rows = np.sort(np.random.default_rng(0).choice(self.count, sample, replace=False))
        # The float16 file is read block by block, twice, not memory-mapped: a map keeps every page it
        # touched in this process's memory, and a sample drawn from all of it touches nearly all of them
        # (7.7 GB of a 14.4 GB peak at 10M vectors, docs/benchmarks.md).
        parts = []
        for start, block in _f16_blocks(self.stem, self.count, self.d):
            parts.append(block[rows[np.searchsorted(rows, start) : np.searchsorted(rows, start + len(block))] - start])
        with _threads(os.cpu_count() or 1):
            index.train(np.concatenate(parts))
            del parts
            for _, block in _f16_blocks(self.stem, self.count, self.d):
                index.add(block)
        index.make_direct_map()  # rows' codes found by row: the vectors, decoded, without a float16 copy
        if not kept:
            self.stem.with_suffix(".f16").unlink()
        return index


@contextlib.contextmanager
def _threads(n: int):
    """FAISS's threads while building. Searches use one: a single query on two threads ran 6-10x slower
    here (docs/benchmarks.md); the setting is the process's, so a search during a build shares this."""
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(1)


faiss.omp_set_num_threads(1)


def _f16_blocks(stem: Path, count: int, d: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 rows) of a segment's float16 file, ``_BLOCK`` rows at a time, read."""
    path = stem.with_suffix(".f16")
    if path.stat().st_size != count * d * 2:
        raise ValueError(f"{path} holds {path.stat().st_size} bytes, not the {count * d * 2} of {count} vectors")
    with open(path, "rb") as f:
        for start in range(0, count, _BLOCK):
            n = min(_BLOCK, count - start)
            yield start, np.fromfile(f, dtype="<f2", count=n * d).reshape(n, d).astype(np.float32)


def _f16(stem: Path, count: int, d: int) -> np.ndarray:
    return _mapped(stem.with_suffix(".f16"), "<f2", (count, d))


def _mapped(path: Path, dtype: str, shape: tuple[int, int]) -> np.ndarray:
    """A raw little-endian array file, memory-mapped (no header to parse: np.load's header parsing is
    not safe in threads on Python 3.11); ValueError when its size is not the shape's."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if path.stat().st_size != size:
        raise ValueError(f"{path} holds {path.stat().st_size} bytes, not the {size} of its {shape} values")
    if size == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


def segment_files(stem: Path, kind: Kind | str) -> list[Path]:
    kind = kind if isinstance(kind, Kind) else Kind.parse(kind)
    suffixes = (".faiss", ".ids", ".f16") if kind.name == "ivf" and kind.get("rescore") else (".faiss", ".ids")
    return [stem.with_suffix(s) for s in suffixes]


class Segment:
    """One segment, opened for search: memory-mapped, so opening costs the same at any size.

    ``exclude``: chunk ids whose rows search must skip (chunks removed since the segment was written).
    """

    def __init__(self, stem: Path, kind: str, exclude: np.ndarray | None = None) -> None:
        self.stem = stem
        self.kind = Kind.parse(kind)
        # Memory-mapped, codes read where they lie (IO_FLAG_MMAP would copy an IVF's lists: 3-6x slower search).
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY
        self._index = faiss.read_index(str(stem.with_suffix(".faiss")), flags)
        table = _mapped(stem.with_suffix(".ids"), "<i8", (3, self._index.ntotal))
        self.ids, self._sorted, self._sorted_rows = table[0], table[1], table[2]  # row -> id; ids ascending
        probe = np.linspace(0, len(self.ids) - 1, min(len(self.ids), 64)).astype(np.int64)  # a glance, not a read
        if not (
            np.all(np.diff(self._sorted[probe]) >= 0)
            and np.all((self._sorted_rows[probe] >= 0) & (self._sorted_rows[probe] < len(self.ids)))
        ):
            raise ValueError(f"{stem}.ids is not a table of chunk ids")
        rescored = self.kind.name == "ivf" and self.kind.get("rescore") > 0
        self._f16 = _f16(stem, len(self.ids), self._index.d) if rescored else None
        rows = self.rows(np.asarray(exclude if exclude is not None else [], dtype=np.int64))
        self.excluded = np.asarray(self.ids[rows], dtype=np.int64) if len(rows) else rows  # their ids
        self._excluded = rows
        self.live = len(self.ids) - len(rows)
        self._skip = faiss.IDSelectorBatch(rows) if len(rows) else None  # kept: the selector points into it
        self._params = self._search_params()

    @property
    def d(self) -> int:
        return self._index.d

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The rows of those of ``ids`` that are in this segment."""
        ids = np.asarray(ids, dtype=np.int64)
        at = np.searchsorted(self._sorted, ids)
        inside = at < len(self._sorted)
        at, ids = at[inside], ids[inside]
        at = at[np.asarray(self._sorted[at]) == ids]
        return np.asarray(self._sorted_rows[at], dtype=np.int64)

    def _search_params(self):
        sel = faiss.IDSelectorNot(self._skip) if self._skip is not None else None
        self._not = sel  # kept alive beside the parameters that point at it
        if self.kind.name == "ivf":
            self._every_list = faiss.SearchParametersIVF(sel=sel, nprobe=self.kind.get("nlist"))
            return faiss.SearchParametersIVF(sel=sel, nprobe=self.kind.get("nprobe"))
        return faiss.SearchParameters(sel=sel) if sel is not None else None

    def search(
        self, query: np.ndarray, k: int, exact: bool = False, only: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """(chunk id, inner product) of the ``k`` best rows; ``exact`` scans every vector even of an ``ivf``.

        ``only``: the chunk ids a filter lets through (None: every live one); a segment scores each of
        them exactly when there are few (``FILTER_EXACT_UP_TO``), else its index searches only them.
        """
        if only is not None:
            return self._search_only(np.asarray(query, dtype=np.float32), k, exact, only)
        k = min(k, self.live)
        if k <= 0:
            return []
        query = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if self.kind.name == "ivf" and exact:
            if self._f16 is not None:
                return self._scan(query[0], k)
            # Every list probed: each vector scored from its codes (what the float16-less index has).
            scores, rows = self._index.search(query, k, params=self._every_list)
            rows = rows[0][rows[0] >= 0]
            return [(int(self.ids[r]), float(s)) for r, s in zip(rows, scores[0][: len(rows)], strict=True)]
        wanted = max(k, self.kind.get("rescore")) if self._f16 is not None else k
        scores, rows = self._index.search(query, min(wanted, self.live), params=self._params)
        rows = rows[0][rows[0] >= 0]
        if self._f16 is not None:  # re-score the candidates exactly
            scores = np.asarray(self._f16[np.sort(rows)], dtype=np.float32) @ query[0]
            rows = np.sort(rows)
            best = np.argsort(-scores, kind="stable")[:k]
            rows, scores = rows[best], scores[best]
        else:
            scores = scores[0][: len(rows)]
        return [(int(self.ids[r]), float(s)) for r, s in zip(rows, scores, strict=True)]

    def _search_only(self, query: np.ndarray, k: int, exact: bool, only: np.ndarray) -> list[tuple[int, float]]:
        rows = np.setdiff1d(self.rows(only), self._excluded)
        k = min(k, len(rows))
        if k <= 0:
            return []
        if self.kind.name == "ivf" and not exact and len(rows) > FILTER_EXACT_UP_TO:
            selector = faiss.IDSelectorBatch(rows)
            params = faiss.SearchParametersIVF(sel=selector, nprobe=self.kind.get("nprobe"))
            wanted = min(max(k, self.kind.get("rescore")) if self._f16 is not None else k, len(rows))
            scores, found = self._index.search(query.reshape(1, -1), wanted, params=params)
            hits = found[0] >= 0
            if hits.sum() >= k:  # else the lists probed held too few of them: score them all
                if self._f16 is not None:
                    return self._rescored(query, found[0][hits], k)
                return [(int(self.ids[r]), float(s)) for r, s in zip(found[0][hits][:k], scores[0][hits][:k])]
        return self._rescored(query, rows, k)

    def _rescored(self, query: np.ndarray, rows: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The ``k`` best of ``rows``, each scored exactly (a block at a time)."""
        best: list[tuple[float, int]] = []
        for n in range(0, len(rows), _BLOCK):
            part = np.sort(rows[n : n + _BLOCK])
            scores = self._rows_vectors(part) @ query
            top = np.argsort(-scores, kind="stable")[:k]
            best = sorted(best + [(float(scores[j]), int(part[j])) for j in top], key=lambda x: -x[0])[:k]
        return [(int(self.ids[r]), s) for s, r in best]

    def _rows_vectors(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of ``rows``, in order: the float16 copy's, else decoded from the index in one call."""
        if self._f16 is not None:
            return np.asarray(self._f16[rows], dtype=np.float32)
        return self._index.reconstruct_batch(rows) if len(rows) else np.zeros((0, self.d), dtype=np.float32)

    def _scan(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        skip = set(self._excluded.tolist())
        found: list[tuple[float, int]] = []
        for start in range(0, len(self.ids), _BLOCK):
            scores = self._block(start, min(len(self.ids), start + _BLOCK)) @ query
            top = np.argsort(-scores)[: k + len(skip)]
            found += [(float(scores[j]), start + int(j)) for j in top]
        found = [f for f in sorted(found, reverse=True) if f[1] not in skip]
        return [(int(self.ids[r]), s) for s, r in found[:k]]

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (all in this segment), in order."""
        rows = self.rows(ids)  # in the order of ``ids``
        if len(rows) != len(ids):
            raise KeyError(f"{self.stem.name} lacks some of the chunks asked for")
        return self._rows_vectors(rows)

    def _block(self, start: int, end: int) -> np.ndarray:
        """The vectors of rows ``start`` to ``end``: the float16 copy's, else decoded from the index."""
        if self._f16 is not None:
            return np.asarray(self._f16[start:end], dtype=np.float32)
        return self._index.reconstruct_n(start, end - start)

    def blocks(self, skip: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of every row but ``skip``'s, a block at a time: what a merge copies."""
        drop = set(np.asarray(skip).tolist())
        for start in range(0, len(self.ids), _BLOCK):
            ids = np.asarray(self.ids[start : start + _BLOCK])
            keep = np.array([i not in drop for i in ids.tolist()], dtype=bool)
            vectors = self._block(start, start + len(ids))
            yield ids[keep], vectors[keep]


def verify(stem: Path, record: dict, checksums: bool = True) -> list[str]:
    """What is wrong with a segment's files against its record (size, and unless not ``checksums`` their
    sha256, reading them whole): empty when nothing is."""
    problems = []
    for name, want in record["files"].items():
        path = stem.parent / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            problems.append(f"{path} is missing")
            continue
        if size != want["bytes"]:
            problems.append(f"{path} is truncated or changed ({size} bytes, expected {want['bytes']})")
        elif checksums and sha256(path) != want["sha256"]:
            problems.append(f"{path} is damaged (checksum mismatch)")
    return problems


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def message(e: Exception) -> str:
    """The useful part of a FAISS error, without FAISS's C++ function and source location."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return re.sub(r"^Error in .*? at \S+:\d+: (Error: )?", "", text)


def fsync(path: Path) -> None:
    """Force a file's (or a folder's entries') bytes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
