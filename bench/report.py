"""Write one benchmark's section of docs/benchmarks.md, leaving the other sections as they are.

Each section sits between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` and
starts with the command, date and machine, so every figure says where it came from.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEvery section below was written by the command it names; rerun it to refresh the section.\n"


def machine() -> str:
    """A one-line description of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def p95(values) -> float:
    """The 95th percentile (nearest rank below) of ``values``."""
    ordered = sorted(values)
    return ordered[int(0.95 * (len(ordered) - 1))]


def write_section(name: str, title: str, body: str, command: str | None = None) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md."""
    command = command or "python " + " ".join(shlex.quote(a) for a in sys.argv)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=DOC.parent
        ).stdout.strip()
        changed = subprocess.run(  # the code measured isn't the commit's: say so
            ["git", "status", "--porcelain", "--", "qa", "bench", "app.py"],
            capture_output=True,
            text=True,
            cwd=DOC.parent.parent,  # the paths are the repository's
        ).stdout.strip()
        commit += " + uncommitted changes" if commit and changed else ""
    except OSError:
        commit = "?"
    section = (
        f"<!-- bench:{name} -->\n## {title}\n\n"
        f"`{command}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit or '?'}, "
        f"{machine()}\n\n{body.strip()}\n<!-- /bench:{name} -->\n"
    )
    DOC.parent.mkdir(exist_ok=True)
    text = DOC.read_text() if DOC.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n", re.DOTALL)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    DOC.write_text(text)
