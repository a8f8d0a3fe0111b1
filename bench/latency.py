"""Search latency of each configuration on the SciFact index, interleaved so they share the noise.

    python bench/latency.py              # 300 SciFact claims x 5 configurations -> section "latency"
    python bench/latency.py --rounds 3   # every claim asked 3 times per configuration

Every question is asked once per configuration in turn (the order rotating), so a
busy moment on this shared machine slows all of them alike; the ratios to dense-only
are what to read. Each search encodes its question with the model, as in the app.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quality import SCIFACT, embedder  # noqa: E402
from bench.report import p95, write_section  # noqa: E402
from qa.config import Settings  # noqa: E402
from qa.eval import load_beir, temporary_index  # noqa: E402
from qa.library import Library  # noqa: E402

CONFIGS = [
    ("dense only", {"mode": "dense", "answer_candidates": 0}),
    ("dense + answer selection", {"mode": "dense"}),
    ("lexical only", {"mode": "lexical", "answer_candidates": 0}),
    ("hybrid, convex fusion", {"answer_candidates": 0}),
    ("hybrid + answer selection (default)", {}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="times each claim is asked per configuration")
    parser.add_argument("-k", type=int, default=10, help="passages asked for (default 10)")
    args = parser.parse_args()
    dataset = load_beir(SCIFACT, "test")
    settings = Settings()
    emb = embedder()
    times: dict[str, list[float]] = {name: [] for name, _ in CONFIGS}
    with temporary_index(dataset, settings, emb) as lib:
        libs = [(name, Library(lib.store, emb.inner, settings.with_(**changes))) for name, changes in CONFIGS]
        for _, each in libs:  # warm up: first calls load lazily initialised parts
            each.search(dataset.questions[0].text, k=args.k)
        load_before = os.getloadavg()[0]
        for n, q in enumerate(dataset.questions * args.rounds):
            for name, each in libs[n % len(libs) :] + libs[: n % len(libs)]:
                began = time.perf_counter()
                each.search(q.text, k=args.k)
                times[name].append(1000 * (time.perf_counter() - began))
        chunks = lib.info().chunks
    base = statistics.median(times["dense only"])
    rows = [
        f"| {name} | {statistics.median(t):.1f} | {p95(t):.1f} | {statistics.median(t) / base:.2f}x |"
        for name, t in times.items()
    ]
    body = (
        f"{len(dataset.questions) * args.rounds} searches per configuration (k={args.k}) over "
        f"{len(dataset.articles)} SciFact abstracts in {chunks} chunks, the configurations taking turns "
        f"question by question. Load average before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}.\n\n"
        "| configuration | median ms | 95th percentile ms | median vs dense only |\n|---|---|---|---|\n"
        + "\n".join(rows)
    )
    print(body)
    write_section("latency", "Search latency by configuration (SciFact)", body)


if __name__ == "__main__":
    main()
