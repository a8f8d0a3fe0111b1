"""Fuzz the app's JSON routes from the OpenAPI schema it serves: no 5xx, every answer JSON and bounded.

    .venv/bin/python bench/fuzz.py --examples 2000   # writes the "fuzz" section of docs/benchmarks.md

The real app (qa.web.server.app) over the seed index and the real model, in process over ASGI.
schemathesis reads /api/openapi.json and generates bodies that fit the schema (positive) and
bodies that break it (negative: wrong types, missing fields, out-of-range k...); Hypothesis adds
bodies no schema describes (raw: any bytes, any JSON document). Each case goes to its route, and
each /api/build case goes twice, without the build token (must be 401) and with it (must be a
4xx: the fuzzer never names this app's index, so no build may run). tests/test_fuzz.py runs the
same fuzz with a few examples.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from qa.search import MAX_K, MAX_QUESTION_CHARS  # noqa: E402

TOKEN = "fuzz-build-token"
# A search answer holds at most MAX_K passages; a passage is one chunk (at most 256 word pieces:
# about 1-2 KB of text, 3 bytes a character at worst), its highlight (part of it), a title cut to a
# few hundred characters and short metadata: under 8 KB. 50 x 8 KB, the question (2,000 characters)
# and the JSON around them stay under 512 KB, whatever the request.
RESPONSE_BYTES = 512 * 2**10
# An error is one line, cut to qa.web.api.MAX_ERROR_CHARS (500) characters, at most 6 bytes each as JSON.
ERROR_BYTES = 4 * 2**10


@dataclass
class Tally:
    """What a fuzz run saw: examples sent, status codes per route, the largest answer, the problems found."""

    examples: int = 0
    statuses: Counter = field(default_factory=Counter)
    max_bytes: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, route: str, status: int, size: int) -> None:
        self.examples += 1
        self.statuses[f"{route} {status}"] += 1
        self.max_bytes = max(self.max_bytes, size)


def problems(route: str, response, token: bool | None = None) -> list[str]:
    """What is wrong with ``response`` to a fuzzed request to ``route`` (``token``: whether the build token went)."""
    status, size = response.status_code, len(response.content)
    found = []
    if status >= 500:
        found.append(f"status {status}")
    if token is False and status != 401:
        found.append(f"status {status} without the build token, not 401")
    if token and not 400 <= status < 500:
        found.append(f"status {status} with the build token: a fuzzed build must be refused")
    if size > (RESPONSE_BYTES if status == 200 else ERROR_BYTES):
        found.append(f"a {size}-byte answer with status {status}")
    try:
        body = json.loads(response.content)
    except ValueError:
        return [*found, f"not JSON: {response.content[:200]!r}"]
    if status != 200:
        if not (isinstance(body, dict) and isinstance(body.get("error"), str)):
            found.append(f'an error without {{"error": ...}}: {response.content[:200]!r}')
    elif route == "/api/search":
        if len(body["question"]) > MAX_QUESTION_CHARS:
            found.append(f"the question echoed with {len(body['question'])} characters")
        if not 1 <= body["k"] <= MAX_K or len(body["passages"]) > body["k"]:
            found.append(f"{len(body['passages'])} passages for k={body['k']}")
    return found


def fuzz(asgi_app, examples: int, stop: bool = True) -> Tally:
    """Send ``examples`` positive, negative and raw cases each to each JSON route of ``asgi_app``.

    Each response is checked by ``problems`` and by schemathesis's own checks (its status, media
    type and body are the ones the schema documents; a body that breaks the schema is refused).
    With ``stop``, the first problem raises AssertionError (Hypothesis then shrinks the case and
    shows it); without, problems are collected in the returned Tally and the run goes on.
    """
    import schemathesis
    from schemathesis import GenerationMode

    tally = Tally()
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", asgi_app)
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_one(result.ok(), mode, examples, tally, stop)()
        _fuzz_raw(asgi_app, result.ok().path, examples, tally, stop)()
    return tally


def _settings(examples: int):
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=examples,
        deadline=None,
        database=None,  # nothing written beside the code; a failure prints the case to rerun
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


def _calls(path: str) -> list[tuple[bool | None, dict]]:
    """How a case goes to ``path``: (whether the build token goes, the headers)."""
    if path == "/api/build":
        return [(False, {}), (True, {"Authorization": f"Bearer {TOKEN}"})]
    return [(None, {})]


def _record(tally: Tally, what: str, path: str, response, found: list[str], stop: bool) -> None:
    tally.add(path, response.status_code, len(response.content))
    found = [f"{what}: {p}" for p in found]
    if found and stop:
        raise AssertionError("\n".join(found))
    tally.problems.extend(found)


def _fuzz_one(operation, mode, examples: int, tally: Tally, stop: bool):
    """The Hypothesis test of ``operation`` with ``mode``'s cases."""
    from hypothesis import given
    from schemathesis.errors import FailureGroup

    @_settings(examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        for token, headers in _calls(operation.path):
            response = case.call(headers=headers)
            found = problems(operation.path, response, token)
            try:
                case.validate_response(response, headers=headers)
            except FailureGroup as e:
                found += [f"{failure.title}: {failure.message}" for failure in e.exceptions]
            _record(tally, f"{mode.value} {operation.path} {case.body!r:.300}", operation.path, response, found, stop)

    return run


def _fuzz_raw(asgi_app, path: str, examples: int, tally: Tally, stop: bool):
    """The Hypothesis test of ``path`` with bodies no schema describes: any bytes, any JSON document."""
    from hypothesis import given
    from hypothesis import strategies as st
    from starlette.testclient import TestClient

    client = TestClient(asgi_app)
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
    documents = st.recursive(scalars, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20)
    bodies = st.binary(max_size=2048) | documents.map(lambda value: json.dumps(value).encode())  # NaN, Infinity too

    @_settings(examples)
    @given(body=bodies)
    def run(body):
        for token, headers in _calls(path):
            response = client.post(path, content=body, headers={"Content-Type": "application/json", **headers})
            _record(tally, f"raw {path} {body!r:.300}", path, response, problems(path, response, token), stop)

    return run


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
