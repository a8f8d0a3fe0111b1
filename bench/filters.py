"""Filtered search at scale: the cost of each filter (source, dates, article) against the unfiltered search.

    python bench/filters.py [--chunks 1000000] [--data /tmp/qa-scale] [--questions 300] [--no-write]

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
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quality import SQUAD1  # noqa: E402
from bench.report import write_section  # noqa: E402
from bench.scale import FORMAT, GENERATOR, label  # noqa: E402
from qa import Library  # noqa: E402
from qa.eval import load_squad  # noqa: E402
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
    from qa import filters

    where = filters.validate(filters.check(kwargs.get("source"), kwargs.get("after"), kwargs.get("before"),
                                           kwargs.get("article")), store)  # fmt: skip
    return len(store._allowed(where)) / store.manifest["chunks"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=1_000_000, help="the bench/scale.py index to use")
    parser.add_argument("--data", type=Path, default=Path("/tmp/qa-scale"), help="where bench/scale.py keeps it")
    parser.add_argument("--questions", type=int, default=100, help="SQuAD v1.1 dev questions asked per filter")
    parser.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md as it is")
    args = parser.parse_args()
    original = args.data / f"index-{args.chunks}-format{FORMAT}-generator{GENERATOR}"
    if not (original / "CURRENT").exists():
        raise SystemExit(f"No index at {original}: run python bench/scale.py --chunks {args.chunks} first.")
    copy = args.data / f"filters-{args.chunks}"
    began, reused = time.perf_counter(), (copy / "CURRENT").exists()
    prepare(original, copy)
    prepared = "prepared by an earlier run" if reused else f"prepared in {time.perf_counter() - began:.0f} s"
    lib = Library.open(copy)
    questions = random.Random(SEED).sample([q.text for q in load_squad(SQUAD1).questions], args.questions)
    lib.search(questions[0], k=K)  # the model loaded, the files mapped
    first: dict[str, list[float]] = {name: [] for name, _ in FILTERS}
    again: dict[str, list[float]] = {name: [] for name, _ in FILTERS}
    full: dict[str, int] = {name: 0 for name, _ in FILTERS}
    load = os.getloadavg()[0]
    for q in questions:
        for name, kwargs in FILTERS:
            forget(lib.store)
            for times in (first, again):
                t = time.perf_counter()
                found = lib.search(q, k=K, **kwargs)
                times[name].append(1000 * (time.perf_counter() - t))
                full[name] += len(found) == K
    base = statistics.median(again["none"])
    rows = []
    for name, kwargs in FILTERS:
        a, b = sorted(first[name]), sorted(again[name])
        rows.append(
            f"| {name} | `{kwargs}` | {share(lib, kwargs):.3f} | {statistics.median(a):.1f} | "
            f"{a[int(0.95 * (len(a) - 1))]:.1f} | {statistics.median(b):.1f} | {b[int(0.95 * (len(b) - 1))]:.1f} | "
            f"{statistics.median(b) / base:.2f}x | {full[name] / (2 * len(questions)):.3f} |"
        )
    body = (
        f"{lib.store.manifest['chunks']:,} chunks of `bench/scale.py --chunks {args.chunks}` (its copy given "
        f"{SOURCES} sources in turn and dates spread over 2000-2024, {prepared}), "
        f"{len(questions)} SQuAD v1.1 dev questions asked with each filter twice: first with the store's memory of "
        f"filters emptied, then again. k={K}, default settings, the "
        f"question's encoding included. Load average before / after: {load:.1f} / {os.getloadavg()[0]:.1f}.\n\n"
        "| filter | arguments | share of chunks let through | first: median ms | p95 ms | again: median ms | p95 ms | "
        f"again vs none | searches with all {K} passages |\n|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )
    print(body)
    if not args.no_write:
        write_section(f"filters-{label(args.chunks)}", f"Filtered search at {args.chunks:,} chunks", body)


if __name__ == "__main__":
    main()
