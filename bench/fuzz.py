"""Fuzz the app's JSON routes from the OpenAPI schema it serves: no 5xx, every answer JSON and bounded.

    .venv/bin/python bench/fuzz.py --examples 2000   # writes the "fuzz" section of docs/benchmarks.md

The real app (qa.web.server.app) over the seed index and the real model, in process over ASGI.
schemathesis reads /api/openapi.json and generates bodies that fit the schema (positive) and
bodies that break it (negative: wrong types, missing fields, out-of-range k...); Hypothesis adds
bodies no schema describes (raw: any bytes, any JSON document). Each case goes to its route, and
each /api/build case goes twice, without the build token (must be 401) and with it (must be a
4xx: the fuzzer never names this app's index, so no build may run). The harness is tests/fuzzing.py;
tests/test_fuzz.py runs the same fuzz with a few examples.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fuzzing import ERROR_BYTES, RESPONSE_BYTES, TOKEN, fuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per route and mode (default: 2000)")
    parser.add_argument("--no-write", action="store_true", help="print, don't update docs/benchmarks.md")
    args = parser.parse_args()
    from bench.report import write_section
    from qa import Library
    from qa.web.server import app

    with tempfile.TemporaryDirectory(prefix="qa-bench-fuzz-") as tmp:
        library = Library.build([ROOT / "seeds"], index_dir=Path(tmp) / "index", progress=False)
        began = time.perf_counter()
        tally = fuzz(app(library, build_token=TOKEN), args.examples, stop=False)
        seconds = time.perf_counter() - began
    statuses = ", ".join(f"{route}: {n}" for route, n in sorted(tally.statuses.items()))
    body = (
        f"{tally.examples} requests from {args.examples} positive, {args.examples} negative (schemathesis, from "
        f"/api/openapi.json) and {args.examples} raw examples (any bytes, any JSON) per route; each /api/build "
        f"case without and with the build token, "
        f"in {seconds:.0f} s, against the seed index and the real model.\n\n"
        f"| what | seen |\n|---|---|\n"
        f"| statuses | {statuses} |\n"
        f"| largest answer | {tally.max_bytes:,} bytes "
        f"(bound: {RESPONSE_BYTES:,} for answers, {ERROR_BYTES:,} for errors) |\n"
        f"| problems (5xx, not JSON, over the bound, echo) | {len(tally.problems)} |\n"
    )
    body += "".join(f"\n- `{p}`" for p in tally.problems[:20])
    print(body)
    if not args.no_write:
        write_section("fuzz", "Fuzzing the JSON routes", body)
    return 1 if tally.problems else 0


if __name__ == "__main__":
    sys.exit(main())
