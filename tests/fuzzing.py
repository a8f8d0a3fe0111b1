"""The fuzz harness of the JSON routes (schemathesis + Hypothesis): tests/test_fuzz.py runs it with a few
examples, bench/fuzz.py with thousands.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from qa.search import MAX_K, MAX_QUESTION_CHARS

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
