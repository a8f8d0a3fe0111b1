"""The page against hostile input, in Chromium: heavy uploads refused with the reason, Gradio's copies
of uploads cleaned up, a question with a lone surrogate answered, a non-text title refused."""

from __future__ import annotations

import json

import pytest

from tests import test_browser
from tests.test_app import post
from tests.test_browser_upload import call_add, open_panel, press_add, seed_collection

browser, page = test_browser.browser, test_browser.page  # Chromium once per module; a fresh page per test

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def setup(tmp_path_factory, real_embedder):
    folder, index, root = seed_collection(tmp_path_factory, real_embedder, "hostile-page")
    uploads = root / "gradio-uploads"
    uploads.mkdir()
    return folder, index, uploads


@pytest.fixture(scope="module")
def app_url(start_app, setup):
    folder, index, uploads = setup
    env = {"QA_MAX_ADD_SECONDS": "5", "GRADIO_TEMP_DIR": str(uploads)}
    with start_app(index, args=["--collection", str(folder)], env=env) as url:
        yield url


def test_a_heavy_upload_is_refused_with_the_reason_and_no_copy_is_left(page, setup):
    folder, _, uploads = setup
    lines = "".join(
        json.dumps({"id": n, "text": f"Harbour note {n}: ferries left on time."}) + "\n" for n in range(3000)
    )
    open_panel(page)
    page.locator("#qa-files input[type=file]").set_input_files(
        [
            {"name": "notes.jsonl", "mimeType": "application/jsonl", "buffer": lines.encode()},
            {"name": "ferry.txt", "mimeType": "text/plain", "buffer": b"The Zorvath ferry carried 77 goats.\n"},
        ]
    )
    page.locator("#qa-files").get_by_text("ferry").first.wait_for()  # shown as "ferry" and ".txt"
    status = press_add(page, "Not added (1)")
    assert "'notes.jsonl' was not added: indexing it would take longer than the app's limit of 5 seconds" in status
    assert "(QA_MAX_ADD_SECONDS) here: its first 151 articles alone would." in status and "Indexed: 1 added" in status
    assert (folder / "ferry.txt").exists() and not (folder / "notes.jsonl").exists()
    left = [p.name for p in uploads.rglob("*") if p.is_file()]
    assert "ferry.txt" not in left and "notes.jsonl" not in left, left
    # The Files box is empty again: a second press does not send the deleted copies' paths.
    assert page.locator("#qa-files").get_by_text("ferry").count() == 0
    page.locator("#qa-new-text textarea").fill("The Zorvath pier reopened after the storm.")
    again = press_add(page, "the-zorvath-pier-reopened-after-the-storm.md")  # this press's status, not the last
    assert "could not be read" not in again and "Not added" not in again


def test_a_jsonl_with_a_lone_surrogate_uploaded_in_the_panel_is_indexed(page, app_url, setup):
    folder, _, _ = setup
    line = '{"title": "Quorvax ferry", "text": "The Quorvax ferry \\ud800 carried 91 sheep to the island."}\n'
    open_panel(page)
    page.locator("#qa-files input[type=file]").set_input_files(
        [{"name": "sheep.jsonl", "mimeType": "application/jsonl", "buffer": line.encode()}]
    )
    page.locator("#qa-files").get_by_text("sheep").first.wait_for()
    status = press_add(page, "Indexed: 1 added")
    assert "Not added" not in status and (folder / "sheep.jsonl").exists()
    code, body = post(app_url, {"question": "How many sheep did the Quorvax ferry carry?", "k": 1})
    assert code == 200 and body["passages"][0]["title"] == "Quorvax ferry", body
    assert "\ufffd carried 91 sheep" in body["passages"][0]["text"]


def test_a_question_with_a_lone_surrogate_is_answered_in_the_chat(page):
    box = page.locator("#qa-question textarea")
    typed = "el.value = '\\ud800 Who traveled to Mexico City?';"
    box.evaluate(f"(el) => {{ {typed} el.dispatchEvent(new Event('input', {{bubbles: true}})); }}")
    box.press("Enter")
    page.locator("#qa-chat").get_by_text("Blinken").first.wait_for()
    assert "TextEncodeInput" not in page.locator("body").inner_text()


def test_a_title_that_is_not_text_is_refused_with_a_message(app_url, setup):
    event = call_add(app_url, [], ["not", "text"], "Some text about the harbour.")
    assert event.get("success"), event
    assert "its title and text must be text, not list" in event["output"]["data"][0]
