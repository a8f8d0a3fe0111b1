"""Rebuild cost on the Wikinews articles: full build vs rebuild with nothing changed vs one article changed.

    .venv/bin/python bench/rebuild.py [--rounds 3] [--articles PATH] [--no-write]

All 263 articles live in one .jsonl file, so "one article changed" rewrites that file
with one record's text changed: the build must still embed only that record. Each
case runs in this process with the model already loaded (as in the app, or a script
using the API); as `qa build` in a fresh process (as from a shell), which adds Python's
start and, whenever something must be embedded, loading the model; and as `qa build`
while `python app.py` serves the index, which hands the build to the app (qa.handoff).
Medians of ``--rounds`` runs; the section is written to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from qa import Library, Settings  # noqa: E402
from qa.embedding import load_embedder  # noqa: E402

WIKINEWS = ROOT.parent / "shared" / "data" / "wikinews" / "articles.jsonl"


def change_one(path: Path, n: int) -> None:
    """Rewrite the .jsonl file with record ``n`` (mod the count) given a new last sentence."""
    lines = path.read_text("utf-8").splitlines()
    i = n % len(lines)
    rec = json.loads(lines[i])
    rec["text"] = rec["text"].rstrip() + f" Edited for the rebuild benchmark, round {n}."
    lines[i] = json.dumps(rec, ensure_ascii=False)
    path.write_text("\n".join(lines) + "\n", "utf-8")


def in_process(folder: Path, index: Path, embedder, full: bool = False):
    began = time.perf_counter()
    lib = Library.build([folder], index_dir=index, embedder=embedder, full=full, progress=False)
    return time.perf_counter() - began, lib.last_build


def cli(folder: Path, index: Path, full: bool = False, app: bool = False) -> float:
    cmd = [sys.executable, "-m", "qa.cli", "build", str(folder), "--index", str(index)] + (["--full"] if full else [])
    began = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if app != ("in the app serving it" in done.stderr):
        raise RuntimeError(f"expected the build {'in' if app else 'outside'} the app:\n{done.stderr}")
    return seconds


@contextmanager
def serving_app(index: Path, port: int = 7899):
    """`python app.py` serving ``index`` until the block ends."""
    log = index.parent / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--index", str(index), "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        while not (index / ".server").exists() or not _answers(f"http://127.0.0.1:{port}/"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"app.py did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield
    finally:
        proc.terminate()
        proc.wait(30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each case (median reported)")
    parser.add_argument("--articles", type=Path, default=WIKINEWS, help=".jsonl file of articles")
    parser.add_argument("--no-write", action="store_true", help="print, don't update docs/benchmarks.md")
    args = parser.parse_args()
    began = time.perf_counter()
    embedder = load_embedder(Settings().model)
    load = time.perf_counter() - began
    times: dict[str, list[float]] = {}
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder, index = Path(tmp) / "wikinews", Path(tmp) / "index"
        folder.mkdir()
        shutil.copy(args.articles, folder / "articles.jsonl")
        path = folder / "articles.jsonl"

        def record(case: str, seconds: float, report=None) -> None:
            times.setdefault(case, []).append(seconds)
            reports.setdefault(case, report)
            print(f"{case}: {seconds:.3f} s", file=sys.stderr, flush=True)

        for n in range(args.rounds):
            record("full", *in_process(folder, index, embedder, full=True))
            record("unchanged", *in_process(folder, index, embedder))
            change_one(path, n)
            record("one changed", *in_process(folder, index, embedder))
            record("cli full", cli(folder, index, full=True))
            record("cli unchanged", cli(folder, index))
            change_one(path, 1000 + n)
            record("cli one changed", cli(folder, index))
        with serving_app(index):
            for n in range(args.rounds):
                record("app full", cli(folder, index, full=True, app=True))
                record("app unchanged", cli(folder, index, app=True))
                change_one(path, 2000 + n)
                record("app one changed", cli(folder, index, app=True))
    body = table({k: statistics.median(v) for k, v in times.items()}, reports, load, args.rounds)
    print(body)
    if not args.no_write:
        write_section("rebuild", "Incremental rebuilds (Wikinews, 263 articles)", body)


def table(median: dict[str, float], reports: dict, load: float, rounds: int) -> str:
    full = reports["full"]
    rows = [
        "| case | in process (model loaded) | share | `qa build`, app running | share "
        "| `qa build`, no app running | share |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case, target in [("full", ""), ("unchanged", " (target < 2%)"), ("one changed", " (target < 5%)")]:
        cells = []
        for prefix in ["", "app ", "cli "]:
            seconds = median[prefix + case]
            cells.append(f"{seconds:.3f} s | {seconds / median[prefix + 'full']:.2%}")
        rows.append(f"| {case}{target} | " + " | ".join(cells) + " |")
    one = reports["one changed"]
    return "\n".join(rows) + (
        f"\n\nMedians of {rounds} rounds. The full build embedded {full.chunks_embedded} chunks of "
        f"{full.added + full.unchanged} articles ({len(full.skipped)} records skipped, e.g. "
        f"{full.skipped[0].reason if full.skipped else '-'}); the one-article rebuild embedded {one.chunks_embedded} "
        f"({one.changed} changed, {one.unchanged} unchanged). Loading the model took {load:.1f} s "
        "in this process; with no app running, `qa build` pays Python's start and, when something must be "
        "embedded, that load too; with `python app.py` serving the index, `qa build` hands the build "
        "to the app, whose model is loaded (shares are of the same column's full build). "
        "Load average at the end (other work shares these cores): "
        f"{os.getloadavg()[0]:.1f}.\n"
    )


if __name__ == "__main__":
    main()
