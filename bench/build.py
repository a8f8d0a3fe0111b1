"""Build throughput against raw model.encode on the very same chunks, and search latency.

    .venv/bin/python bench/build.py [--rounds 3] [--articles PATH]

On the Wikinews articles: a full `qa build` (read, clean, chunk, embed, write) is
timed against `model.encode` of the chunk texts that build produced, alternating
the two `--rounds` times so that machine noise hits both alike; the pipeline's
overhead is the ratio of the medians. Then the median latency of one `search`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import p95, write_section  # noqa: E402
from qa import Library, Settings  # noqa: E402
from qa.embedding import load_embedder  # noqa: E402

WIKINEWS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "wikinews" / "articles.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating build/encode rounds")
    parser.add_argument("--articles", type=Path, default=WIKINEWS, help="articles to build from")
    args = parser.parse_args()
    embedder = load_embedder(Settings().model)
    builds, encodes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.rounds):
            began = time.perf_counter()
            lib = Library.build([args.articles], index_dir=Path(tmp) / "index", embedder=embedder, full=True)
            builds.append(time.perf_counter() - began)
            store = lib.store
            texts = [row.text for _, row in sorted(store.chunks(store.chunk_ids()).items())]
            began = time.perf_counter()
            embedder.encode(texts, progress=False)
            encodes.append(time.perf_counter() - began)
            print(f"round {n + 1}: build {builds[-1]:.1f} s, encode {encodes[-1]:.1f} s", file=sys.stderr)
        latencies = _search_latencies(lib, _titles(lib)[:200])
        info = lib.info()
    build_s, encode_s = statistics.median(builds), statistics.median(encodes)
    chunks = info.chunks
    body = f"""On {info.articles} Wikinews articles, {chunks} chunks of at most {info.chunk_tokens} tokens,
{args.rounds} alternating rounds, medians:

| what | seconds | chunks/s |
|---|---|---|
| `qa build` (read, clean, chunk, embed, write FAISS + SQLite) | {build_s:.2f} | {chunks / build_s:.1f} |
| `model.encode` of the same chunk texts | {encode_s:.2f} | {chunks / encode_s:.1f} |

Pipeline overhead over raw encoding: **{(build_s / encode_s - 1) * 100:+.1f}%** (target: under 10%).
All rounds, build: {", ".join(f"{b:.1f}" for b in builds)} s; encode: {", ".join(f"{e:.1f}" for e in encodes)} s.

Search latency (hybrid, k=5, {len(latencies)} questions: the article titles), one call each:
median **{statistics.median(latencies) * 1000:.1f} ms**, 95th percentile {p95(latencies) * 1000:.1f} ms.
"""
    print(body)
    write_section("build", "Build throughput and search latency", body, "python bench/build.py")


def _titles(lib: Library) -> list[str]:
    """The titles of the indexed articles, in the order of their ids."""
    store = lib.store
    rows = store.chunks(store.chunk_ids())
    return [title for _, title in sorted({(r.article_id, r.title) for r in rows.values()})]


def _search_latencies(lib: Library, questions: list[str]) -> list[float]:
    lib.search("warm up", k=5)
    out = []
    for q in questions:
        began = time.perf_counter()
        lib.search(q, k=5)
        out.append(time.perf_counter() - began)
    return out


if __name__ == "__main__":
    main()
