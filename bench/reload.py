"""Live reload under load: POST /api/search from 16 clients for 60 s while `qa build` rebuilds the index twice.

    .venv/bin/python bench/reload.py [--clients 16] [--seconds 60] [--articles 40] [--no-write]

The app serves the seed article plus the first ``--articles`` Wikinews records. While
the clients run, one `qa build --no-app` in another process adds an article (an
incremental rebuild) and then `qa build --no-app --full` re-embeds everything; the app
must pick up each new generation between requests, without a restart and without one
failed request. (`--no-app`: without it `qa build` would hand the builds to the app,
and there would be no index written by another process to pick up.)
A failed request is an HTTP error, a refused connection or an answer without passages.
The load goes on for ``--seconds`` and at least until both rebuilds have finished.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import p95, write_section  # noqa: E402

WIKINEWS = ROOT.parent / "shared" / "data" / "wikinews" / "articles.jsonl"
QUESTIONS = [
    "Who traveled to Mexico City?",
    "What did Apple release for the iPhone?",
    "Why did Boeing delay the Dreamliner?",
    "How many jobs did General Motors cut?",
]
CANARY = (
    "Harbour crane.txt",
    "A giant harbour crane named Bertha was unloaded in Rotterdam on Tuesday.\n",
    "What was the harbour crane in Rotterdam called?",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--articles", type=int, default=40, help="Wikinews records besides the seed article")
    parser.add_argument("--no-write", action="store_true", help="print, don't update docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qa-bench-reload-") as tmp:
        folder, index = Path(tmp) / "articles", Path(tmp) / "index"
        shutil.copytree(ROOT / "seeds", folder)
        lines = WIKINEWS.read_text("utf-8").splitlines()[: args.articles]
        (folder / "wikinews.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
        qa_build(folder, index)
        port = free_port()
        url = f"http://127.0.0.1:{port}/api/search"
        app = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), "--index", str(index)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_up(url, app)
            result = run_load(url, folder, index, args)
        finally:
            app.terminate()
            app.wait(timeout=30)
    body = report(result, args)
    print(body)
    if not args.no_write:
        write_section("reload", "Live reload under load", body)


def run_load(url: str, folder: Path, index: Path, args) -> dict:
    stop, lock = threading.Event(), threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []
    canary_seen: list[float] = []
    began = time.perf_counter()

    def client(n: int) -> None:
        i = n
        while not stop.is_set():
            question = CANARY[2] if i % 5 == 0 else QUESTIONS[i % len(QUESTIONS)]
            t = time.perf_counter()
            try:
                passages = post(url, question)
                ok = bool(passages)
            except Exception as e:  # noqa: BLE001 - every failure counts
                ok, passages = False, repr(e)
            with lock:
                latencies.append(time.perf_counter() - t)
                if not ok:
                    failures.append(f"{question!r}: {passages!r}"[:200])
                elif question == CANARY[2] and "Bertha" in passages[0]["text"]:
                    canary_seen.append(time.perf_counter() - began)
            i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    for t in threads:
        t.start()
    time.sleep(5)
    (folder / CANARY[0]).write_text(CANARY[1], "utf-8")
    rebuilds = [
        ("incremental (one article added)", qa_build(folder, index)),
        ("full (`--full`)", qa_build(folder, index, "--full")),
    ]
    done = time.perf_counter() - began
    time.sleep(max(0.0, args.seconds - done))
    stop.set()
    for t in threads:
        t.join()
    return {
        "latencies": latencies,
        "failures": failures,
        "rebuilds": rebuilds,
        "seconds": time.perf_counter() - began,
        "rebuilds_done": done,
        "canary": min(canary_seen) if canary_seen else None,
    }


def report(r: dict, args) -> str:
    lat = sorted(r["latencies"])
    p50, p95_ms, top = statistics.median(lat), p95(lat), lat[-1]
    rows = [
        "| measure | value |",
        "|---|---|",
        f"| requests answered / failed | {len(lat) - len(r['failures'])} / {len(r['failures'])} |",
        f"| latency median / 95th percentile / max | {p50 * 1000:.0f} / {p95_ms * 1000:.0f} / {top * 1000:.0f} ms |",
        f"| throughput | {len(lat) / r['seconds']:.1f} requests/s over {r['seconds']:.0f} s |",
    ]
    rows += [f"| rebuild {n + 1}: {name} | {secs:.1f} s |" for n, (name, secs) in enumerate(r["rebuilds"])]
    canary = f"{r['canary']:.1f} s" if r["canary"] is not None else "never"
    rows.append(f"| added article first answered at | {canary} after the load began (added at 5 s) |")
    failures = "".join(f"\n- {f}" for f in r["failures"][:5])
    return "\n".join(rows) + (
        f'\n\n{args.clients} clients post `{{"question", "k": 5}}` in a loop (every fifth question asks about '
        "the article the first rebuild adds) to `python app.py` serving the seed article and "
        f"{args.articles} Wikinews records; both rebuilds run as `qa build --no-app` in another process on the "
        "same cores, so each also pays loading the model. Latency is the client's wall time and includes "
        "waiting for one of the app's search slots." + (f"\n\nFailures:{failures}" if failures else "") + "\n"
    )


def qa_build(folder: Path, index: Path, *flags: str) -> float:
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "qa.cli", "build", str(folder), "--index", str(index), "--no-app", *flags],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - began


def post(url: str, question: str) -> list[dict]:
    data = json.dumps({"question": question, "k": 5}).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())["passages"]


def wait_until_up(url: str, app: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise RuntimeError(f"app.py exited with {app.returncode}")
        try:
            post(url, QUESTIONS[0])
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("app.py gave no answer in 300 s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
