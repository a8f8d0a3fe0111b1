"""The app as programs use it: `python app.py` as a real server, through gradio_client and the JSON route."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from qa import Passage, Settings

from conftest import ROOT, shows_k

FIELDS = {f.name for f in dataclasses.fields(Passage)} | {"highlight"}


def post(url: str, body: object, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url + "/api/search", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def check_passage(p: dict) -> None:
    assert set(p) == FIELDS
    assert isinstance(p["text"], str) and p["text"]
    assert isinstance(p["score"], float) and isinstance(p["similarity"], float)
    assert p["title"].startswith("Blinken in Mexico City")
    assert p["source"] == "OAN Newsroom" and p["date"] == "2021-10-08"
    assert 0 <= p["start"] < p["end"] and isinstance(p["chunk_id"], int)
    assert p["highlight"] and p["highlight"] in p["text"]
    assert p["start"] <= p["highlight_start"] < p["highlight_end"] <= p["end"]


def test_json_route_returns_passages_with_the_python_api_fields(app_url):
    status, body = post(app_url, {"question": "Who traveled to Mexico City?", "k": 3})
    assert status == 200
    assert body["question"] == "Who traveled to Mexico City?" and body["k"] == 3
    assert body["not_in_articles"] is False and shows_k(body["passages"], 3)
    for p in body["passages"]:
        check_passage(p)
    assert "traveled to Mexico City" in body["passages"][0]["highlight"]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"question": ""}, "non-empty"),
        ({"question": "   \n"}, "non-empty"),
        ({"k": 3}, "non-empty"),
        ({"question": "Who?", "k": 0}, "from 1 to"),
        ({"question": "Who?", "k": "3"}, "from 1 to"),
        (["Who?"], "JSON object"),
    ],
)
def test_json_route_explains_bad_requests(app_url, body, fragment):
    status, answer = post(app_url, body)
    assert status == 400 and fragment in answer["error"]


def test_json_route_rejects_a_body_that_is_not_json(app_url):
    status, answer = post(app_url, None, raw=b"question=Who")
    assert status == 400 and "must be JSON" in answer["error"]


def test_json_route_takes_a_very_long_question(app_url):
    status, body = post(app_url, {"question": "Who traveled to Mexico City? " + "x" * 10_000, "k": 2})
    assert status == 200 and len(body["passages"]) == 2


def test_json_route_serves_concurrent_clients(app_url):
    questions = [
        "Who traveled to Mexico City?",
        "What did Blinken say about the cycle?",
        "What replaces the Merida Initiative?",
        "Who is the DHS Secretary?",
    ] * 2
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda q: post(app_url, {"question": q, "k": 2}), questions))
    assert all(status == 200 and len(body["passages"]) == 2 for status, body in results)


def test_gradio_client_search_endpoint(client):
    passages = client.predict("Who traveled to Mexico City?", 2, api_name="/search")
    assert len(passages) == 2
    for p in passages:
        check_passage(p)


def test_gradio_client_search_endpoint_takes_the_filters(client):
    """The same filters as /api/search, inside retrieval; a bad one is the route's message."""
    question = "Who traveled to Mexico City?"
    title = "Blinken in Mexico City: US and Mexico plan a new security framework to replace the Merida Initiative"
    for where in ({"source": "oan newsroom"}, {"after": "2021-10", "before": "2021"}, {"article": "merida BLINKEN"}):
        passages = client.predict(
            question, 2, *[where.get(f) for f in ("source", "after", "before", "article")], api_name="/search"
        )
        assert passages and {p["title"] for p in passages} == {title}, where
    assert client.predict(question, 2, None, "2022", None, None, api_name="/search") == []
    with pytest.raises(Exception, match="No article has source 'BBC'"):
        client.predict(question, 2, "BBC", None, None, None, api_name="/search")
    with pytest.raises(Exception, match="YYYY-MM-DD"):
        client.predict(question, 2, None, "last week", None, None, api_name="/search")


def test_gradio_client_chat_answers_then_follows_up(client):
    history, panel, box = client.predict("Who traveled to Mexico City?", [], 5, api_name="/chat")
    assert box == ""
    assert [m["role"] for m in history] == ["user", "assistant"]
    reply = _text(history[-1])
    assert "traveled to Mexico City" in reply and "\\[1\\]" in reply
    assert "Blinken in Mexico City" in panel and 'class="qa-answer"' in panel

    history, panel, _ = client.predict("What did he say about the cycle of crime?", history, 5, api_name="/chat")
    assert len(history) == 4
    assert "This is a cycle that continues" in _text(history[-1])


def test_gradio_client_chat_answers_an_empty_question_with_a_short_message(client):
    history, _, _ = client.predict("   ", [], 5, api_name="/chat")
    assert len(history) == 1 and history[0]["role"] == "assistant"
    assert "type a question" in _text(history[0])


def test_gradio_client_chat_takes_a_question_of_10000_characters(client):
    question = "What did Blinken say about the cycle? " + "blah " * 2000
    history, _, _ = client.predict(question[:10_000], [], 3, api_name="/chat")
    assert len(history) == 2
    assert len(_text(history[0])) < 1100  # shown cut short, searched without error


def _text(message: dict) -> str:
    content = message["content"]
    if isinstance(content, list):
        return " ".join(block.get("text", "") for block in content if isinstance(block, dict))
    return content


def test_app_builds_an_index_from_seeds_when_there_is_none(tmp_path, real_embedder, capsys):
    sys.path.insert(0, str(ROOT))
    try:
        import app
    finally:
        sys.path.remove(str(ROOT))
    lib = app.open_library(Settings(index_dir=tmp_path / "index"))
    assert lib.info().articles == 1
    assert "building one from" in capsys.readouterr().err


def test_app_help_names_its_options():
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True)
    for option in ("--host", "--port", "--index", "QA_HOST", "QA_PORT", "QA_INDEX_DIR"):
        assert option in out.stdout


def test_app_takes_the_collection_folder_from_an_option_or_qa_collection(monkeypatch):
    sys.path.insert(0, str(ROOT))
    try:
        import app
    finally:
        sys.path.remove(str(ROOT))
    assert app.parse_args(["--collection", "inbox"]).collection == "inbox"
    monkeypatch.setenv("QA_COLLECTION", "from-env")
    assert app.parse_args([]).collection == "from-env"
