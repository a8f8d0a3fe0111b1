"""The "Add articles" panel in a real browser: paste an article and ask about it, refused uploads, a restart.

Like tests/test_browser.py (whose Chromium, page and ask it shares): skipped without Chromium or
Playwright, except when CI=true, where they fail.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import urllib.request
import uuid

import pytest

from qa import Library

from conftest import SEEDS
from tests import test_browser
from tests.test_app import post
from tests.test_browser import ARTIFACTS, ask

# test_browser's fixtures, used here by name: Chromium once per module, and a page that records
# dialogs and any request leaving 127.0.0.1 (its app_url is this module's).
browser, page = test_browser.browser, test_browser.page

pytestmark = pytest.mark.browser

# Markup in the title: it must show as text in the status, the chat and the passages, and run nothing.
TITLE = 'Aurora count <img src=x onerror="window.__xss=1"> at Zorvath'
TEXT = (
    "The Zorvath glacier observatory in northern Norway recorded 412 auroras during the winter of 2023. "
    "Its director, Ingrid Halvorsen, said the solar maximum made it the brightest season in forty years."
)
QUESTION = "How many auroras did the Zorvath glacier observatory record?"


def seed_collection(tmp_path_factory, real_embedder, name: str):
    """A temporary collection folder (a copy of seeds/) and its index: never the repository's own.

    Returns (the folder, the index, the temporary root holding both)."""
    root = tmp_path_factory.mktemp(name)
    folder = root / "articles"
    shutil.copytree(SEEDS, folder)
    Library.build([folder], index_dir=root / "index", embedder=real_embedder).close()
    return folder, root / "index", root


@pytest.fixture(scope="module")
def collection(tmp_path_factory, real_embedder):
    """A copy of seeds/ and its index (``seed_collection``)."""
    folder, index, _ = seed_collection(tmp_path_factory, real_embedder, "upload")
    return folder, index


@pytest.fixture(scope="module")
def app_url(start_app, collection):
    """The app, saving added articles in articles/added/ (inside the folder the index was built from)."""
    folder, index = collection
    with start_app(index, args=["--collection", str(folder / "added")]) as url:
        yield url


def open_panel(page):
    page.locator("#qa-add-panel").get_by_text("Add articles").first.click()
    page.locator("#qa-add").wait_for()


def press_add(page, expect: str) -> str:
    """Press "Add to the collection" and wait for the status to show ``expect``; returns the status text."""
    page.locator("#qa-add").click()
    page.locator("#qa-add-status").get_by_text(expect).first.wait_for()
    return page.locator("#qa-add-status").inner_text()


def articles_in_header(page) -> int:
    return int(re.search(r"Chat with (\d+) articles", page.locator("body").inner_text())[1])


def test_pasted_article_answers_in_the_chat_and_survives_a_restart(page, collection, start_app, real_embedder):
    folder, index = collection
    before = articles_in_header(page)
    open_panel(page)
    page.locator("#qa-new-title input, #qa-new-title textarea").first.fill(TITLE)
    page.locator("#qa-new-text textarea").fill(TEXT)
    status = press_add(page, "Indexed: 1 added")
    assert f"“{TITLE}”" in status and "as aurora-count-img-src-x-onerror-window-__xss-1-at-zorvath.md" in status
    assert articles_in_header(page) == before + 1
    assert page.locator("#qa-new-text textarea").input_value() == ""  # cleared once it went in

    ask(page, QUESTION, "412 auroras")
    assert TITLE in page.locator("#qa-chat").inner_text()
    assert TITLE in page.locator("#qa-passages").inner_text()
    assert page.evaluate("window.__xss") is None and not page.dialogs and not page.outside
    assert [p.parent for p in folder.rglob("aurora-count*")] == [folder / "added"]

    with start_app(index) as url:  # a restart, with the default collection folder this time
        status_code, body = post(url, {"question": QUESTION, "k": 1})
    assert status_code == 200 and body["passages"][0]["title"] == TITLE
    rebuilt = Library.build([folder], index_dir=index, embedder=real_embedder)  # what `qa build` would do next
    assert (rebuilt.last_build.added, rebuilt.last_build.removed, rebuilt.last_build.chunks_embedded) == (0, 0, 0)
    rebuilt.close()


def test_refused_and_renamed_uploads_are_explained_in_the_panel(page, collection):
    folder, index = collection
    open_panel(page)
    page.locator("#qa-files input[type=file]").set_input_files(
        [
            {"name": "../../etc/passwd", "mimeType": "text/plain", "buffer": b"The ferry carried 77 goats.\n"},
            {"name": "<i>report</i>.docx", "mimeType": "application/octet-stream", "buffer": b"PK binary"},
        ]
    )
    page.locator("#qa-files").get_by_text("docx").first.wait_for()  # both uploaded to the server
    status = press_add(page, "Not added (1)")
    assert "“../../etc/passwd” as etc-passwd.txt" in status and "Indexed: 1 added" in status
    assert "'<i>report</i>.docx' was not added: qa reads .txt, .md, .html, .jsonl and .pdf files, not .docx." in status
    written = [p for p in index.parent.rglob("*") if p.is_file() and not p.is_relative_to(index)]
    assert all(p.is_relative_to(folder) for p in written), written
    assert (folder / "added" / "etc-passwd.txt").read_bytes() == b"The ferry carried 77 goats.\n"
    assert page.evaluate("window.__xss") is None and not page.outside
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "add-articles.png"), full_page=True)


def call_add(url: str, files: list[dict], title: str = "", text: str = "") -> dict:
    """Press "Add to the collection" as a hand-made client would: the queue call with file data it chose."""
    config = json.loads(urllib.request.urlopen(url + "/config", timeout=30).read())
    ids = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    [index] = [i for i, d in enumerate(config["dependencies"]) if any(ids[t[0]] == "qa-add" for t in d["targets"])]
    session = uuid.uuid4().hex
    body = {"data": [files, title, text], "fn_index": index, "session_hash": session}
    api = url + config.get("api_prefix", "/gradio_api")
    join = urllib.request.Request(api + "/queue/join", json.dumps(body).encode(), {"Content-Type": "application/json"})
    urllib.request.urlopen(join, timeout=30).read()
    with urllib.request.urlopen(f"{api}/queue/data?session_hash={session}", timeout=60) as events:
        for line in events:
            event = json.loads(line.decode().removeprefix("data:").strip() or "{}")
            if event.get("msg") == "process_completed":
                return event
    raise AssertionError("no answer from the queue")


def test_a_client_naming_a_server_file_gets_a_refusal_not_the_file(app_url, collection, tmp_path):
    folder, _ = collection
    secret = tmp_path / "secret.txt"
    secret.write_text("The vault code is 8841.\n")
    event = call_add(app_url, [{"path": str(secret), "orig_name": "notes.txt", "meta": {"_type": "gradio.FileData"}}])
    # Gradio refuses the event, or the panel refuses the file; either way nothing is read or saved.
    status = event["output"]["data"][0] if event.get("success") else ""
    assert not event.get("success") or "not a file uploaded through this page" in status, event
    assert not list(folder.rglob("notes*")) and not list(folder.rglob("secret*"))


def test_searches_keep_answering_while_an_addition_is_indexed(app_url):
    text = " ".join(f"Ferry {i} left pier {i * 7} of the Zorvath fjord with {i % 40} cars." for i in range(400))
    done, results = threading.Event(), []

    def search_until_done():
        while not done.is_set():
            results.append(post(app_url, {"question": "Who directs the Zorvath observatory?", "k": 3})[0])

    searcher = threading.Thread(target=search_until_done)
    searcher.start()
    try:
        event = call_add(app_url, [], "Zorvath ferry log", text)
    finally:
        done.set()
        searcher.join()
    assert event.get("success") and "Indexed: 1 added" in event["output"]["data"][0], event
    assert results and set(results) == {200}, results
