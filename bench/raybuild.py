"""Build throughput on Ray (1 and 2 actors) against a build in one process, and what 10M chunks would take.

    .venv/bin/python bench/raybuild.py [--rounds 2] [--articles PATH] [--no-write]

On the Wikinews articles (../shared/data): full builds from scratch, each configuration in its own
fresh process (`qa build --full --no-app`, so each pays what a user's build pays: Python, the model,
and on Ray the cluster's start and each actor's model), taking turns round by round so that machine
noise hits all alike: in one process; `--ray local --ray-actors 1`; `--ray local --ray-actors 2`. The
cluster is a local one started by the build (`--ray local`) on this machine's CPUs. Reported: median
seconds and chunks/s, and the embedding rate once started (chunks over the time from the first to the
last passage the build reported), from which the arithmetic for 10M chunks on N workers follows.
Writes section ``raybuild`` of docs/benchmarks.md (``--no-write``: don't).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402

WIKINEWS = ROOT.parent / "shared" / "data" / "wikinews" / "articles.jsonl"
CONFIGS = [
    ("in one process", []),
    ("Ray, 1 actor", ["--ray", "local", "--ray-actors", "1"]),
    ("Ray, 2 actors", ["--ray", "local", "--ray-actors", "2"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--articles", type=Path, default=WIKINEWS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {name: [] for name, _ in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="qa-raybuild-") as tmp:
        for n in range(args.rounds):
            for name, flags in CONFIGS:
                runs[name].append(build(args.articles, Path(tmp) / "index", flags))
                print(f"round {n + 1}, {name}: {json.dumps(runs[name][-1])}", file=sys.stderr, flush=True)
    body = report(runs, args)
    print(body)
    if not args.no_write:
        write_section("raybuild", "Builds on Ray", body)


def build(articles: Path, index: Path, flags: list[str]) -> dict:
    """One full `qa build` in a fresh process: seconds, chunks, and seconds from first to last progress."""
    command = [sys.executable, "-m", "qa.cli", "build", str(articles), "--index", str(index), "--full", "--no-app"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    code = (
        "import sys, time; from qa import cli, library\n"
        "seen = []\n"
        "real = library.Library.build.__func__\n"
        "def build(cls, *a, **k):\n"
        "    k['progress'] = lambda done, total: seen.append((time.perf_counter(), done))\n"
        "    return real(cls, *a, **k)\n"
        "library.Library.build = classmethod(build)\n"
        "status = cli.main(sys.argv[1:])\n"
        "steps = [(t, d) for t, d in seen if d > 0]\n"
        "print('PROGRESS', steps[0][0] if steps else 0, steps[-1][0] if steps else 0, steps[-1][1] if steps else 0)\n"
        "sys.exit(status)\n"
    )
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *command[3:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROGRESS"))
    first, last, chunks_done = line.split()[1:]
    summary = next(x for x in done.stdout.splitlines() if x.startswith("Articles:"))
    chunks = int(summary.split("Embedded ")[1].split()[0])
    return {"seconds": round(seconds, 2), "chunks": chunks, "embedding_s": round(float(last) - float(first), 2)}


def report(runs: dict[str, list[dict]], args: argparse.Namespace) -> str:
    rows, rates = [], {}
    chunks = next(iter(runs.values()))[0]["chunks"]
    base = statistics.median(r["seconds"] for r in runs[CONFIGS[0][0]])
    for name, _ in CONFIGS:
        seconds = statistics.median(r["seconds"] for r in runs[name])
        steady = statistics.median(r["embedding_s"] for r in runs[name])
        rates[name] = chunks / steady if steady else 0.0
        speed = f"{chunks / seconds:.1f} | {base / seconds:.2f}x"
        rows.append(f"| {name} | {seconds:.1f} | {speed} | {steady:.1f} | {rates[name]:.1f} |")
    per_actor = rates["Ray, 1 actor"]
    two = rates["Ray, 2 actors"]
    load = os.getloadavg()[0]
    hours = 10_000_000 / per_actor / 3600 if per_actor else float("nan")
    lines = [
        f"{chunks} chunks of the Wikinews articles, full builds from scratch, {args.rounds} rounds taking turns, "
        "medians; each build a fresh `qa build --full --no-app` process (so Ray's columns include starting a "
        "local cluster and loading the model in each actor).",
        "",
        "| build | seconds | chunks/s | vs one process | embedding s (first to last passage) | chunks/s embedding |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"All rounds: {json.dumps(runs)}. Load average at the end: {load:.2f}.",
        "",
        f"**10M chunks, the arithmetic.** One actor (one CPU core of this machine, one model) embeds "
        f"{per_actor:.1f} chunks/s once started; two actors on this machine's 2 cores give {two:.1f} chunks/s "
        f"({two / per_actor if per_actor else 0:.2f}x; one process, two torch threads: {rates[CONFIGS[0][0]]:.1f}: "
        "where two actors gain nothing, this machine's two vCPUs give the model no more than one core). "
        f"10,000,000 chunks / {per_actor:.1f} chunks/s = {hours:,.0f} core-hours; on a cluster of N such CPU "
        f"workers that is about {hours:,.0f} / N hours (N = 64: {hours / 64:,.1f} h; N = 256: {hours / 256:,.1f} h), "
        "as long as the one process that writes keeps up: it writes (SQLite, FAISS segments, or Milvus inserts) "
        "far faster than one actor embeds (bench/scale.py writes 1M chunks through `Writer` in under 4 minutes). "
        "GPU workers were not measured here (no GPU on this machine).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
