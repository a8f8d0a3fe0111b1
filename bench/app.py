"""Benchmark the web app: start-up to first answer, JSON-route latency under load, peak memory.

    .venv/bin/python bench/app.py            # writes the "app" section of docs/benchmarks.md

1. Time from `python app.py` (a prebuilt seed index) to the first answer of POST /api/search.
2. Median and 95th-percentile latency of POST /api/search with 8 concurrent clients for 30 s,
   on 127.0.0.1, serving the seed article and the 263 Wikinews articles.
3. The server's peak resident memory (VmHWM) while serving that index, after the load.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import p95, write_section  # noqa: E402

WIKINEWS = ROOT.parent / "shared" / "data" / "wikinews" / "articles.jsonl"
# Distinct questions, so that the load is not one question's cache hits: these and every turn of the multi-turn cases.
QUESTIONS = [
    "Who traveled to Mexico City?",
    "How many people were killed when a crane fell into the Grand Mosque?",
    "Which phone's pre-orders overwhelmed Apple and AT&T?",
    "Which governments gave bridge loans to GM and Chrysler?",
    "Who was named chief executive of General Motors in 2013?",
    "Where did the Boeing 787 Dreamliner make its first test flight?",
    "Which company announced it will buy Sears?",
    "Who won the 2004 Nobel Peace Prize?",
]
QUESTIONS += [q for case in json.loads((ROOT / "tests" / "multiturn.json").read_text()) for q in case["turns"]]
QUESTIONS = list(dict.fromkeys(QUESTIONS))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3, help="start-ups to time (default: 3)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default: 8)")
    parser.add_argument("--seconds", type=float, default=30.0, help="load duration (default: 30)")
    parser.add_argument("--no-write", action="store_true", help="print, don't update docs/benchmarks.md")
    args = parser.parse_args()
    from qa import Library

    with tempfile.TemporaryDirectory(prefix="qa-bench-app-") as tmp:
        seed_index, wn_index = Path(tmp) / "seed", Path(tmp) / "wikinews"
        lib = Library.build([ROOT / "seeds"], index_dir=seed_index, progress=False)
        Library.build([ROOT / "seeds", WIKINEWS], index_dir=wn_index, embedder=lib.embedder, progress=False)
        articles = Library.open(wn_index, embedder=lib.embedder).info().articles
        starts = [time_to_first_answer(seed_index) for _ in range(args.starts)]
        print(f"start-up to first answer: {starts}", flush=True)
        with App(wn_index) as app:
            load_before = os.getloadavg()[0]
            latencies, errors = load(app.url, args.clients, args.seconds)
            rss_mb, peak_mb = memory_mb(app.proc.pid)
    lat = sorted(latencies)
    p50, p95_ms = statistics.median(lat), p95(lat)
    body = (
        "| measure | value |\n|---|---|\n"
        f"| `python app.py` to first answer (prebuilt seed index; median of {len(starts)}) | "
        f"{statistics.median(starts):.1f} s (min {min(starts):.1f}, max {max(starts):.1f}) |\n"
        f"| POST /api/search, {args.clients} concurrent clients for {args.seconds:.0f} s: median latency | "
        f"{p50 * 1000:.0f} ms |\n"
        f"| same: 95th-percentile latency | {p95_ms * 1000:.0f} ms |\n"
        f"| same: throughput | {len(lat) / args.seconds:.1f} requests/s ({len(lat)} answered, {errors} errors) |\n"
        f"| peak resident memory serving {articles} articles (seed + Wikinews) | {peak_mb:.0f} MB "
        f"(resident after the load: {rss_mb:.0f} MB; target < 1,536 MB) |\n\n"
        'Each client posts `{"question": ..., "k": 5}` in a loop, cycling through '
        f"{len(QUESTIONS)} questions; latency is the client's wall time per request, so under load it "
        "includes waiting for one of the app's search slots (`--concurrency`, default 4). "
        "Peak memory is the server process's VmHWM from /proc, read after the load. "
        f"The machine is shared: its 1-minute load average was {load_before:.1f} when the load began."
    )
    print(body)
    if not args.no_write:
        write_section("app", "Web app: start-up, latency under load, memory", body)
    return 0


def stop(proc: subprocess.Popen) -> None:
    """Stop an app started for a benchmark: SIGTERM (it removes its .server file), then SIGKILL after 15 s."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def memory_mb(pid: int) -> tuple[float, float]:
    """Process ``pid``'s resident memory now and its peak so far (VmRSS, VmHWM from /proc), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    kb = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines() if line.startswith("Vm")}
    return kb["VmRSS"] / 1024, kb["VmHWM"] / 1024


class App:
    """`python app.py` on a free port, stopped on exit."""

    def __init__(self, index: Path) -> None:
        self.index = index

    def __enter__(self) -> App:
        self.began = time.perf_counter()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), "--index", str(self.index)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while post(self.url, QUESTIONS[0]) is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}")
            if time.perf_counter() - self.began > 300:
                raise RuntimeError("app.py gave no answer in 300 s")
            time.sleep(0.1)
        self.ready = time.perf_counter() - self.began
        return self

    def __exit__(self, *exc) -> None:
        stop(self.proc)


def time_to_first_answer(index: Path) -> float:
    with App(index) as app:
        return app.ready


def load(url: str, clients: int, seconds: float) -> tuple[list[float], int]:
    """Latencies of every answered request, and the number of failed ones."""
    latencies: list[float] = []
    errors = [0]
    stop = time.perf_counter() + seconds
    lock = threading.Lock()

    def client(n: int) -> None:
        i = n
        while time.perf_counter() < stop:
            began = time.perf_counter()
            ok = post(url, QUESTIONS[i % len(QUESTIONS)]) is not None
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors[0] += 1
            i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0]


def post(url: str, question: str) -> dict | None:
    data = json.dumps({"question": question, "k": 5}).encode()
    req = urllib.request.Request(url + "/api/search", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read()) if r.status == 200 else None
    except (OSError, urllib.error.HTTPError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
