"""Fuzz the JSON routes from their OpenAPI schema (schemathesis) against the real app, index and model.

The harness is tests/fuzzing.py; bench/fuzz.py runs it with thousands of examples, here a few dozen per route
keep the suite fast.
"""

from __future__ import annotations

import json
import re

import pytest

from qa.errors import QuestionError
from qa.search import check_k, check_question
from qa.web.api import MAX_ERROR_CHARS, VISIBLE

from fuzzing import ERROR_BYTES, TOKEN, fuzz, problems

EXAMPLES = 25  # per route and mode (schema-valid, schema-breaking)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(seed_library):
    from qa.web.server import app

    return app(seed_library, build_token=TOKEN)


@pytest.fixture(scope="module")
def client(served):
    from starlette.testclient import TestClient

    return TestClient(served)


def test_the_json_routes_hold_under_fuzzing(served):
    tally = fuzz(served, EXAMPLES)  # the first problem fails the test with the case that shows it
    assert tally.problems == []
    seen = {key.rsplit(" ", 1)[0] + " " + key[-3] + "xx" for key in tally.statuses}
    # Both routes were reached, searches were answered and refused, builds refused without and with the token.
    assert {"/api/search 2xx", "/api/search 4xx", "/api/build 4xx"} <= seen
    assert tally.statuses["/api/build 401"] == sum(n for key, n in tally.statuses.items() if "build" in key) / 2


def test_the_schema_documents_what_the_routes_answer(client):
    paths = client.get("/api/openapi.json").json()["paths"]
    assert set(paths["/api/build"]["post"]["responses"]) >= {"401", "409", "413", "422"}
    assert "400" not in paths["/api/build"]["post"]["responses"]  # it answers 422 to a bad body
    answer = paths["/api/search"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"question", "k", "not_in_articles", "passages"} <= set(answer["required"])
    assert answer["properties"]["not_in_articles"] == {"type": "boolean"}


def test_the_schemas_question_rule_is_check_question(served):
    """Every character the schema's pattern calls visible is one check_question keeps, and no other."""
    pattern = re.compile(VISIBLE)
    for code in range(0x110000):
        try:
            kept = bool(check_question(chr(code)))
        except QuestionError:
            kept = False
        assert kept == bool(pattern.search(chr(code))), hex(code)


GOOD_BUILD = {"paths": ["/nowhere"], "model": "all-MiniLM-L6-v2", "chunk_tokens": 192, "overlap_sentences": 1}
BIG = "x" * 60_000
HUGE = int("9" * 4000)


@pytest.mark.parametrize(
    "route, body",
    [
        ("/api/search", {"question": "Who traveled to Mexico City?", "k": BIG}),
        ("/api/search", {"question": "Who traveled to Mexico City?", "k": HUGE}),
        ("/api/search", {"question": "Who traveled to Mexico City?", "k": [[[["x" * 1000] * 40]]]}),
        ("/api/search", {"question": BIG, "k": 2}),
        ("/api/build", {**GOOD_BUILD, "index_dir": "/" + BIG}),
        ("/api/build", {**GOOD_BUILD, "index_dir": "INDEX", "model": BIG}),
        ("/api/build", {**GOOD_BUILD, "index_dir": "INDEX", "chunk_tokens": HUGE}),
        ("/api/build", {**GOOD_BUILD, "index_dir": "INDEX", "chunk_tokens": BIG}),
        ("/api/build", {**GOOD_BUILD, "index_dir": "INDEX", "overlap_sentences": HUGE}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_no_answer_sends_a_big_value_back(client, seed_library, route, body):
    """Found beside the fuzz: an error quoted the value it refused whole (a 60 KB k came back in a 60 KB error)."""
    if body.get("index_dir") == "INDEX":  # this app's own index: the build gets as far as checking the numbers
        body = {**body, "index_dir": str(seed_library.settings.index_dir.resolve())}
    response = client.post(route, content=json.dumps(body), headers=AUTH if "build" in route else {})
    assert response.status_code in (200, 400, 409, 422)
    assert problems(route, response, token=True if "build" in route else None) == []
    if response.status_code != 200:
        assert len(response.json()["error"]) <= MAX_ERROR_CHARS and len(response.content) <= ERROR_BYTES


def test_k_is_never_quoted_whole():
    """The one k rule (the chat, Gradio's /search, the CLI and /api/search) cuts what it quotes."""
    with pytest.raises(QuestionError) as refused:
        check_k(BIG)
    assert len(str(refused.value)) < 200 and "must be a whole number" in str(refused.value)
