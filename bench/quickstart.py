"""Time the README's two commands from a clean clone: set up + serve the app, set up + run the tests.

    .venv/bin/python bench/quickstart.py [--skip-tests]

Clones HEAD into a temporary folder beside the repository (so ../shared/data
resolves as in CI), runs `bash scripts/setup.sh && .venv/bin/python app.py`
until the page answers, then `bash scripts/test.sh`; then clones HEAD again into
an empty temporary folder with nothing beside it (what a person who clones the
repository gets) and runs `bash scripts/test.sh` there too. Records the times and
the test counts. pip's download cache is warm on a machine that installed qa
before, so a first install on a new machine also pays for the downloads.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-tests", action="store_true", help="time only the app command")
    args = parser.parse_args()
    clone = ROOT.parent / f"qa-quickstart-{os.getpid()}"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    try:
        app_s = _time_app(clone)
        rows = [f"| `bash scripts/setup.sh && .venv/bin/python app.py` (until the page answers) | {app_s:.0f} s |"]
        if not args.skip_tests:
            rows.append(_time_tests(clone, "beside ../shared, as CI"))
            with tempfile.TemporaryDirectory(prefix="qa-bare-") as empty:
                bare = Path(empty) / "qa"
                subprocess.run(["git", "clone", "-q", str(ROOT), str(bare)], check=True)
                rows.append(_time_tests(bare, "a bare clone, nothing beside it"))
    finally:
        shutil.rmtree(clone, ignore_errors=True)
    body = (
        "From a fresh `git clone` (new `.venv`, warm pip cache; Debian's chromium already installed, "
        "so `apt-get install` is skipped). Skipped tests are doctest examples marked `+SKIP` (they need a "
        "built index or a running app), never tests short of data:\n\n| command | wall time |\n|---|---|\n"
    )
    body += "\n".join(rows) + "\n"
    print(body)
    if args.skip_tests:  # a partial run must not replace the section's test row
        print("(--skip-tests: docs/benchmarks.md left as it is)")
        return
    write_section("quickstart", "The README's commands from a clean clone", body, "python bench/quickstart.py")


def _time_tests(clone: Path, where: str) -> str:
    """The table row of `bash scripts/test.sh` run in ``clone``: exit status, pytest's summary line, wall time."""
    began = time.perf_counter()
    result = subprocess.run(["bash", "scripts/test.sh", "-q"], cwd=clone, capture_output=True, text=True)
    summary = (result.stdout.strip().splitlines() or ["?"])[-1]
    seconds = time.perf_counter() - began
    return f"| `bash scripts/test.sh`, {where} (exit {result.returncode}: {summary}) | {seconds:.0f} s |"


def _time_app(clone: Path) -> float:
    port = _free_port()
    began = time.perf_counter()
    env = {**os.environ, "QA_PORT": str(port)}
    proc = subprocess.Popen(
        ["bash", "-c", "bash scripts/setup.sh && exec .venv/bin/python app.py"],
        cwd=clone,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while time.perf_counter() - began < 900:
            if proc.poll() is not None:
                raise SystemExit(f"app exited with {proc.returncode} before serving")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                return time.perf_counter() - began
            except OSError:
                time.sleep(0.5)
        raise SystemExit("app did not serve within 15 minutes")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
