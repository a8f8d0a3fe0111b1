"""Hostile requests to the real app: malformed input is a clear 4xx, every body is bounded, nothing echoes back big."""

from __future__ import annotations

import http.client
import json
import os
from urllib.parse import urlparse

import pytest

from qa.search import MAX_QUESTION_CHARS
from qa.web.limits import MAX_PAGE_BYTES, MAX_SEARCH_BYTES, limit_for, parse_json

from conftest import shows_k
from tests.test_app import post

QUESTION = "Who traveled to Mexico City?"


def raw_post(url: str, path: str, body: bytes, headers: dict | None = None, chunked: bool = False):
    """POST ``body`` as is (optionally chunked, with no Content-Length); returns (status, parsed JSON or text)."""
    where = urlparse(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    try:
        heads = {"Content-Type": "application/json", **(headers or {})}
        if chunked:
            conn.request("POST", path, iter([body[i : i + 65536] for i in range(0, len(body), 65536)]), heads,
                         encode_chunked=True)  # fmt: skip
        else:
            conn.request("POST", path, body, heads)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data.decode("utf-8", "replace")


# ---- 3. a lone surrogate in a question ----


def test_a_lone_surrogate_question_on_the_json_route(app_url):
    status, body = post(app_url, None, raw=b'{"question": "\\ud800 Who traveled to Mexico City?", "k": 2}')
    assert status == 200 and body["question"].startswith("\ufffd Who traveled")
    assert body["passages"][0]["title"].startswith("Blinken in Mexico City")


def gradio_call(url: str, api_name: str, data: bytes) -> tuple[str, object]:
    """Call a Gradio endpoint with a raw JSON ``data`` list (gradio_client can't send a lone surrogate):
    returns the event ("complete" or "error") and its data."""
    status, answer = raw_post(url, f"/gradio_api/call/{api_name}", b'{"data": ' + data + b"}")
    assert status == 200, answer
    where = urlparse(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=120)
    try:
        conn.request("GET", f"/gradio_api/call/{api_name}/{answer['event_id']}")
        lines = conn.getresponse().read().decode().splitlines()
    finally:
        conn.close()
    event = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")][-1]
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")][-1]
    return event, json.loads(data)


def test_a_lone_surrogate_question_through_gradio(app_url):
    # /search's inputs: the question, k, and the filters (source, after, before, article); raw calls send all.
    event, data = gradio_call(app_url, "search", b'["\\ud800 Who traveled to Mexico City?", 2, null, null, null, null]')
    assert event == "complete" and data[0][0]["title"].startswith("Blinken in Mexico City")
    # /chat's inputs: the question, the chat, k, and the filters (sources, after, before, article).
    event, data = gradio_call(app_url, "chat", b'["\\ud800 Who traveled to Mexico City?", [], 3, [], "", "", ""]')
    assert event == "complete" and "Blinken" in json.dumps(data[0][-1]["content"])


# ---- 4. deeply nested JSON ----


def test_deeply_nested_json_is_a_400_not_a_500(app_url):
    status, body = raw_post(app_url, "/api/search", b"[" * 60_000)  # under the size limit, over Python's depth
    assert status == 400 and "nests too deeply" in body["error"]


@pytest.mark.parametrize("body", [b"\xff\xfe", b'{"question": 5}', b'{"question": ["a"]}', b"[]", b"null"])
def test_malformed_bodies_are_400s(app_url, body):
    status, answer = raw_post(app_url, "/api/search", body)
    assert status == 400 and answer["error"]


# ---- 5. k is checked by one rule on every interface ----


@pytest.mark.parametrize("k", [10**12, "5", 2.7, 0, True])
def test_k_is_checked_on_the_gradio_search_endpoint(client, k):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="whole number from 1 to 50"):
        client.predict(QUESTION, k, api_name="/search")


def test_a_whole_float_k_is_that_number(client, app_url):
    assert shows_k(client.predict(QUESTION, 3.0, api_name="/search"), 3)
    status, body = post(app_url, {"question": QUESTION, "k": 3.0})
    assert status == 200 and shows_k(body["passages"], 3)


# ---- 6. every body is bounded; nothing is echoed back longer than what is searched ----


def test_a_big_search_body_is_refused_with_413(app_url):
    status, body = post(app_url, {"question": "x" * (MAX_SEARCH_BYTES + 10)})
    assert status == 413 and "64 KB" in body["error"]


def test_a_declared_100_mb_body_is_refused_before_it_is_read(app_url):
    status, body = raw_post(app_url, "/api/search", b"{}", headers={"Content-Length": str(100 * 2**20)})
    assert status == 413 and body["error"]


def test_a_chunked_body_over_the_limit_is_refused(app_url):
    status, body = raw_post(app_url, "/api/search", b" " * (MAX_SEARCH_BYTES * 3), chunked=True)
    assert status == 413 and body["error"]


def test_the_chat_endpoint_is_bounded_too(app_url):
    question = json.dumps({"data": ["x" * MAX_PAGE_BYTES, [], 5]}).encode()
    status, body = raw_post(app_url, "/gradio_api/call/chat", question)
    assert status == 413 and "2 MB" in body["error"]


def test_a_long_question_is_never_echoed_back_longer_than_searched(app_url, client):
    long = QUESTION + " " + "x" * 50_000
    status, body = post(app_url, {"question": long, "k": 1})
    assert status == 200 and len(body["question"]) == MAX_QUESTION_CHARS
    history, _, _ = client.predict(long, [], 1, api_name="/chat")
    assert len(history[0]["content"]) < 1100  # the question as shown: cut, then escaped


def test_the_json_routes_publish_their_schema(app_url):
    where = urlparse(app_url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    conn.request("GET", "/api/openapi.json")
    schema = json.loads(conn.getresponse().read())
    body = schema["paths"]["/api/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["question"] and body["properties"]["k"]["maximum"] == 50


def test_limits_and_parsing_rules():
    assert limit_for("/api/search") == MAX_SEARCH_BYTES and limit_for("/gradio_api/upload") is None
    assert limit_for("/gradio_api/queue/join") == MAX_PAGE_BYTES
    with pytest.raises(ValueError, match="nests too deeply"):
        parse_json(b"[" * 100_000)
    with pytest.raises(ValueError, match="not JSON"):
        parse_json(os.urandom(8) + b"\xff")
