"""Filtered search at scale: the cost of each filter (source, dates, article) against the unfiltered search.

    python bench/filters.py [--chunks 1000000] [--data /tmp/qa-scale] [--questions 300] [--no-write]
    python bench/filters.py --backend milvus [--chunks 100000] [--data /tmp/qa-scale] [--no-write]

Takes the index that ``bench/scale.py --chunks N`` built under ``--data`` (run that first), copies it to
``--data``/filters-N (its database copied, its segment files hard-linked: the original is left as it was) and
gives the copy's articles what filters read, deterministically: one of ``SOURCES`` sources in turn by article
row, and a date spread over 2000-2024 (``DAYS`` days) by a fixed stride. Then, in this process, it opens the copy
with ``Library.open`` and asks a seeded sample of SQuAD v1.1 dev questions (k=5, the default settings, the
question's encoding included) unfiltered and with each filter of ``FILTERS``, twice: first with the Store's
memory of filters emptied (a filter's first search: it post-filters an unfiltered ranking or gathers the
filter's chunk ids, see ``qa.store.Store._post_filtered``), then again (what a user who keeps the filter gets).
Per filter: the share of the collection's chunks it lets through, median and 95th percentile milliseconds of
each, and the share of searches that found all k passages.
Writes section ``filters-N`` of docs/benchmarks.md (``--no-write``: don't).

``--backend milvus``: the same collection (``bench.scale``'s generator, N chunks, by default 100,000: Milvus
Lite, in this process, fills slowly) written through qa's Milvus writer into a Milvus Lite file,
``--data``/milvus-filters-N/milvus.db (built once, reused after), its articles given the same sources and
dates as they are written; then the same questions and filters, applied inside Milvus's search as filter
expressions (``qa.milvus.MilvusIndex._condition``). qa keeps no memory of filters for Milvus, so the two
passes are timed alike. Writes section ``filters-milvus-N``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import time
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quality import SQUAD1  # noqa: E402
from bench.report import write_section  # noqa: E402
from bench.scale import FORMAT, GENERATOR, label  # noqa: E402
from qa import Library, filters, milvus  # noqa: E402
from qa.config import Settings  # noqa: E402
from qa.eval import load_squad  # noqa: E402
from qa.search import RETRIEVER_CANDIDATES  # noqa: E402
from qa.store import upgrade  # noqa: E402

SOURCES = 10
DAYS = 9131  # 2000-01-01 to 2024-12-31
SEED = 14
K = 5
# (name, keyword arguments of Library.search); "Super Bowl 50" is the title of 54 needle paragraphs.
FILTERS = [
    ("none", {}),
    ("one source (1 in 10)", {"source": "source-3"}),
    ("three sources", {"source": ["source-1", "source-4", "source-7"]}),
    ("every source (all chunks)", {"source": [f"source-{n}" for n in range(SOURCES)]}),
    ("one month", {"after": "2012-03", "before": "2012-03"}),
    ("one year", {"after": "2012", "before": "2012"}),
    ("a decade", {"after": "2005", "before": "2014"}),
    ("one source and one year", {"source": "source-3", "after": "2012", "before": "2012"}),
    ("article by title words", {"article": "super bowl 50"}),
]


def prepare(original: Path, copy: Path) -> None:
    """``copy``: ``original`` with sources and dates given to its articles (made once, reused after; brought
    up to what this qa's builds write when reused)."""
    if (copy / "CURRENT").exists():
        (database,) = copy.glob("data-*/meta.sqlite")
        db = sqlite3.connect(database, isolation_level=None)
        upgrade(db)
        db.close()
        return
    shutil.rmtree(copy, ignore_errors=True)
    partial = copy.with_name(copy.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(original, partial, copy_function=_link_or_copy)
    (database,) = partial.glob("data-*/meta.sqlite")
    db = sqlite3.connect(database, isolation_level=None)
    upgrade(db)  # as qa's next build would: the columns and indexes that filters read
    db.execute("BEGIN")
    db.execute(
        f"UPDATE articles SET source = 'source-' || (row % {SOURCES}), "
        f"date = date('2000-01-01', '+' || (row * 7919 % {DAYS}) || ' days')"
    )
    db.execute("UPDATE articles SET day = date")
    db.execute("COMMIT")
    db.close()
    partial.rename(copy)


def _link_or_copy(src: str, dst: str) -> None:
    if Path(src).name.startswith("meta.sqlite"):  # written to: a copy of its own
        shutil.copy2(src, dst)
    else:
        os.link(src, dst)


def forget(store) -> None:
    """Empty what a Store remembers of the filters it searched with."""
    store._allowed_kept.clear()
    store._short.clear()
    store._wide.clear()


def share(lib: Library, kwargs: dict) -> float:
    """The share of the collection's chunks that the filter lets through."""
    store = lib.store
    if not kwargs:
        return 1.0
    where = filters.validate(filters.check(kwargs.get("source"), kwargs.get("after"), kwargs.get("before"),
                                           kwargs.get("article")), store)  # fmt: skip
    if lib.settings.backend == "milvus":  # counted by Milvus, through the expression the search filters with
        return store._query(store._condition(where), ["count(*)"])[0]["count(*)"] / store.manifest["chunks"]
    return len(store._allowed(where)) / store.manifest["chunks"]


def dated(article, row: int):
    """``article`` with what ``prepare`` gives the article of this (1-based) row: a source and a date."""
    day = datetime.date(2000, 1, 1) + datetime.timedelta(days=row * 7919 % DAYS)
    return replace(article, source=f"source-{row % SOURCES}", date=day.isoformat())


def build_milvus(settings: Settings, data: Path, total: int) -> dict:
    """Write ``bench/scale.py``'s collection of ``total`` chunks, dated, into the Milvus Lite file that
    ``settings`` name, unless an earlier run did (its ``build.json``); the build's figures."""
    from bench import scale
    from qa import backends
    from qa.config import DEFAULT_MODEL
    from qa.embedding import CachedEmbedder, load_embedder

    figures = Path(settings.index_dir) / "build.json"
    if figures.exists():
        return {**json.loads(figures.read_text()), "reused": True}
    shutil.rmtree(settings.index_dir, ignore_errors=True)
    model = load_embedder(DEFAULT_MODEL)
    cached = CachedEmbedder(model).load(data / "vectors")
    needles = scale.needle_pieces(cached)
    bases = scale.base_chunks(cached, scale.sentence_pool())
    cached.save(data / "vectors")
    manifest = {"model": model.name, "dim": model.dim, "chunk_tokens": settings.chunk_tokens}
    manifest["overlap_sentences"] = settings.overlap_sentences
    backend = backends.of(settings)
    writing, row, added, began = 0.0, 0, 0, time.perf_counter()
    with backend.lock():
        writer = backend.writer(manifest, None, settings.dense_index)
        try:
            for n, pieces in enumerate(scale.in_build_order(total, needles, bases)):
                at = time.perf_counter()
                for article, chunks, vectors, sentences in pieces:
                    row += 1
                    writer.add(dated(article, row), chunks, vectors, sentences)
                    added += len(chunks)
                writing += time.perf_counter() - at
                scale._progress(n, added, total, began)
            at = time.perf_counter()
            writer.commit()
            writing += time.perf_counter() - at
        except BaseException:
            writer.abort()
            raise
    result = {"build_s": round(time.perf_counter() - began), "writer_s": round(writing), "articles": row}
    result["peak_rss_mb"] = scale._memory("VmHWM")
    figures.write_text(json.dumps(result, indent=1))
    return {**result, "reused": False}


def index_types(store) -> str:
    """What Milvus reports of the indexes of the data collection's fields, e.g. "vec AUTOINDEX (IP)"."""
    client, found = store.backend.client, []
    for name in client.list_indexes(store.collection):
        params = client.describe_index(store.collection, name)
        found.append(f"{params.get('field_name', name)} {params.get('index_type')} ({params.get('metric_type')})")
    return ", ".join(found)


def open_local(args: argparse.Namespace) -> tuple[Library, str]:
    """The local index's filters copy, opened; how it was prepared."""
    original = args.data / f"index-{args.chunks}-format{FORMAT}-generator{GENERATOR}"
    if not (original / "CURRENT").exists():
        raise SystemExit(f"No index at {original}: run python bench/scale.py --chunks {args.chunks} first.")
    copy = args.data / f"filters-{args.chunks}"
    began, reused = time.perf_counter(), (copy / "CURRENT").exists()
    prepare(original, copy)
    prepared = "prepared by an earlier run" if reused else f"prepared in {time.perf_counter() - began:.0f} s"
    return Library.open(copy), prepared


def open_milvus(args: argparse.Namespace) -> tuple[Library, dict]:
    """The Milvus Lite collection, built if it is not there, opened; the build's figures."""
    where = args.data / f"milvus-filters-{args.chunks}"
    settings = Settings(backend="milvus", milvus_uri=str(where / "milvus.db"), index_dir=where)
    built = build_milvus(settings, args.data, args.chunks)
    return Library.open(where, settings=settings), built


def measure(lib: Library, questions: list[str], forgetting: bool) -> tuple[dict, dict, dict]:
    """Milliseconds of each question's search with each filter, first (after ``forget``, when
    ``forgetting``) and again, and how many searches found all k passages, by filter."""
    first: dict[str, list[float]] = {name: [] for name, _ in FILTERS}
    again: dict[str, list[float]] = {name: [] for name, _ in FILTERS}
    full: dict[str, int] = {name: 0 for name, _ in FILTERS}
    for q in questions:
        for name, kwargs in FILTERS:
            if forgetting:
                forget(lib.store)
            for times in (first, again):
                t = time.perf_counter()
                found = lib.search(q, k=K, **kwargs)
                times[name].append(1000 * (time.perf_counter() - t))
                full[name] += len(found) == K
    return first, again, full


def table(lib: Library, first: dict, again: dict, full: dict, asked: int) -> str:
    base = statistics.median(again["none"])
    rows = []
    for name, kwargs in FILTERS:
        a, b = sorted(first[name]), sorted(again[name])
        rows.append(
            f"| {name} | `{kwargs}` | {share(lib, kwargs):.3f} | {statistics.median(a):.1f} | "
            f"{a[int(0.95 * (len(a) - 1))]:.1f} | {statistics.median(b):.1f} | {b[int(0.95 * (len(b) - 1))]:.1f} | "
            f"{statistics.median(b) / base:.2f}x | {full[name] / (2 * asked):.3f} |"
        )
    return (
        "| filter | arguments | share of chunks let through | first: median ms | p95 ms | again: median ms | p95 ms | "
        f"again vs none | searches with all {K} passages |\n|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("local", "milvus"), default="local", help="the index searched")
    parser.add_argument(
        "--chunks", type=int, help="local: the bench/scale.py index to use (default 1,000,000); milvus: the "
        "chunks written (default 100,000)"
    )  # fmt: skip
    parser.add_argument("--data", type=Path, default=Path("/tmp/qa-scale"), help="where bench/scale.py keeps it")
    parser.add_argument("--questions", type=int, default=100, help="SQuAD v1.1 dev questions asked per filter")
    parser.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md as it is")
    args = parser.parse_args()
    local = args.backend == "local"
    args.chunks = args.chunks or (1_000_000 if local else 100_000)
    lib, prepared = open_local(args) if local else open_milvus(args)
    questions = random.Random(SEED).sample([q.text for q in load_squad(SQUAD1).questions], args.questions)
    lib.search(questions[0], k=K)  # the model loaded, the files mapped
    load = os.getloadavg()[0]
    first, again, full = measure(lib, questions, forgetting=local)
    rows = table(lib, first, again, full, len(questions))
    if local:
        body = (
            f"{lib.store.manifest['chunks']:,} chunks of `bench/scale.py --chunks {args.chunks}` (its copy given "
            f"{SOURCES} sources in turn and dates spread over 2000-2024, {prepared}), "
            f"{len(questions)} SQuAD v1.1 dev questions asked with each filter twice: first with the store's memory "
            f"of filters emptied, then again. k={K}, default settings, the "
            f"question's encoding included. Load average before / after: {load:.1f} / {os.getloadavg()[0]:.1f}.\n\n"
            + rows
        )
        print(body)
        if not args.no_write:
            write_section(f"filters-{label(args.chunks)}", f"Filtered search at {args.chunks:,} chunks", body)
        return
    body = milvus_text(lib, prepared, args.chunks, len(questions), load) + rows + dense_found(lib, questions)
    print(body)
    if not args.no_write:
        title = f"Filtered search on Milvus Lite at {args.chunks:,} chunks"
        write_section(f"filters-milvus-{label(args.chunks)}", title, body)
    milvus.release()  # Milvus Lite's server runs in this process until released


def dense_found(lib: Library, questions: list[str]) -> str:
    """How many candidates qa's Milvus dense side gives under each filter (median over ``questions``), of the
    ``RETRIEVER_CANDIDATES`` that qa asks for or, when a filter lets fewer chunks through, of those: an
    approximate index searched with a filter can find fewer than there are."""
    store, vectors = lib.store, lib.embedder.encode(questions)
    found = []
    for name, kwargs in FILTERS:
        where = filters.validate(filters.check(**kwargs), store)
        could = min(RETRIEVER_CANDIDATES, round(share(lib, kwargs) * store.manifest["chunks"]))
        got = statistics.median(len(store.dense(v, RETRIEVER_CANDIDATES, where=where)) for v in vectors)
        found.append(f"{name} {got:.0f} of {could}")
    return (
        f"\n\nDense candidates that qa's Milvus dense side returned (`MilvusIndex.dense`, {RETRIEVER_CANDIDATES} "
        "asked: Milvus's search with the filter inside, then, when it found fewer, the filter's rows scored exactly "
        f"if they are at most `EXACT_MOST`; median over the questions) of those it could: {'; '.join(found)}. "
        f"(milvus-lite {version('milvus-lite')} builds AUTOINDEX as FAISS HNSW and searches it with the filter as an "
        "ID selector: alone, it found 7 of 100 for a month, 8 for a source and a year, 6 of 66 for an article.)"
    )


def milvus_text(lib: Library, built: dict, chunks: int, asked: int, load: float) -> str:
    """The paragraph above the Milvus run's table: what ran."""
    store = lib.store
    how = "by an earlier run" if built["reused"] else "by this run"
    return (
        f"{store.manifest['chunks']:,} chunks in {built['articles']:,} articles: the collection "
        f"`bench/scale.py --chunks {chunks}` writes, each article given the source and date that the local "
        f"run's copy gives it ({SOURCES} sources in turn, dates spread over 2000-2024), written through qa's "
        f"Milvus writer into Milvus Lite (a file under /tmp, in this process; pymilvus {version('pymilvus')}, "
        f"milvus-lite {version('milvus-lite')}) {how} in {built['build_s']:,} s ({built['writer_s']:,} s of it in "
        f"the writer, the rest generating; peak RSS {built['peak_rss_mb']:,.0f} MB). No Milvus server was "
        "available here: a server's figures may differ. Indexes as qa/milvus.py creates them and Milvus Lite "
        f"reports them: {index_types(store)}. Filters are applied inside Milvus's dense and full-text searches "
        f"as filter expressions (`MilvusIndex._condition`). {asked} SQuAD v1.1 dev questions asked with each filter "
        "twice, first and again: qa keeps no memory of filters for Milvus (the local store's that the local "
        f"run empties first), so both passes are the same search. k={K}, default settings, the question's "
        f"encoding included. Load average before / after: {load:.1f} / {os.getloadavg()[0]:.1f}.\n\n"
    )


if __name__ == "__main__":
    main()
