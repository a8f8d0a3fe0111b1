"""Generated answers in a real browser: `python app.py` with QA_LLM_URL at a scripted OpenAI-compatible server.

The answer streams into the reply above the quoted sentences; the model's markup shows as text; a server
that fails leaves the quotes with a one-line notice. Like tests/test_browser.py (whose Chromium, page and
ask it shares): skipped without Chromium or Playwright, except when CI=true, where they fail.
"""

from __future__ import annotations

import pytest

from tests import test_browser
from tests.llm_server import ScriptedLLM, closed_port_url
from tests.test_browser import ask

browser, page = test_browser.browser, test_browser.page

pytestmark = pytest.mark.browser

QUESTION = "Who traveled to Mexico City?"
QUOTE = "traveled to Mexico City Friday morning"  # the sentence the chat quotes from the seed article


@pytest.fixture(scope="module")
def llm():
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def app_url(start_app, seed_library, llm):
    env = {"QA_LLM_URL": llm.url, "QA_LLM_MODEL": "scripted", "QA_LLM_READ_TIMEOUT": "20"}
    with start_app(seed_library.settings.index_dir, env=env) as url:
        yield url


def chat_text(page) -> str:
    return page.locator("#qa-chat").inner_text()


def wait_for(page, text: str) -> None:
    try:
        page.wait_for_function("t => document.querySelector('#qa-chat').innerText.includes(t)", arg=text)
    except Exception:
        print("CHAT:", chat_text(page))
        raise


def test_the_answer_streams_in_above_the_quotes_and_shows_its_markup_as_text(page, llm):
    llm.reset(hold=True)
    # Two passages (at 5 the seed's overlapping chunks merge into one), so that [2] cites a shown one.
    page.locator("#qa-k input[type=number]").fill("2")
    page.locator("#qa-k input[type=number]").press("Enter")
    ask(page, QUESTION, QUOTE)  # the quotes come first, at once
    wait_for(page, "Blinken traveled to Mexico City [1].")  # the first pieces, while the server holds the rest
    assert llm.held.is_set() and "is a cycle" not in chat_text(page)
    llm.release.set()
    wait_for(page, "Removed citation [7]: the answer cited passages that were not shown.")
    text = chat_text(page)
    answer = 'He said <b>crime</b> is a cycle <img src=x onerror="window.__xss=1"> ![x](http://example.com/x.png) [2].'
    assert answer in text and "[7]." not in text.replace("citation [7]:", "")
    assert text.index("Answer by scripted") < text.index("Blinken traveled to Mexico City [1].") < text.index(QUOTE)
    assert "Quoted from the articles:" in text
    assert page.evaluate("window.__xss") is None
    assert page.locator("#qa-chat img[src*='example.com'], #qa-chat b, #qa-chat a[href*='example.com']").count() == 0
    assert not page.dialogs and not page.outside
    test_browser.ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(test_browser.ARTIFACTS / "generated-answer.png"), full_page=True)


@pytest.mark.parametrize("mode", ["midstream", "http500", "garbage"])
def test_a_failing_server_leaves_the_quotes_with_a_one_line_notice(page, llm, mode):
    llm.reset(mode)
    ask(page, QUESTION, QUOTE)
    wait_for(page, "No generated answer:")
    text = chat_text(page)
    assert QUOTE in text and "Answer by scripted" not in text and "Blinken traveled to Mexico City [1]" not in text
    assert page.locator("#qa-chat .message").count() == 2 and not page.dialogs
    assert page.locator(".toast-body, .error").count() == 0  # no error toast


def test_a_new_question_stops_the_answer_still_streaming(page, llm):
    llm.reset(hold=True)
    ask(page, QUESTION, QUOTE)
    wait_for(page, "Blinken traveled to Mexico City [1].")
    llm.reset("http500")  # the next request fails at once; the held one is released into a cancelled event
    ask(page, "What did he say about the cycle of crime?", "This is a cycle that continues")
    wait_for(page, "No generated answer:")
    llm.release.set()
    page.wait_for_timeout(1500)  # time for the first answer's remaining pieces, were they still written
    text = chat_text(page)
    assert page.locator("#qa-chat .message").count() == 4
    assert "is a cycle <img" not in text  # the first answer was not finished over the newer chat
    assert text.index(QUOTE) < text.index("This is a cycle that continues")
    # (that its connection closes too is tests/test_generate.py's: here it races the app's pace)


def test_a_server_that_is_down_leaves_the_quotes_with_a_one_line_notice(browser, start_app, seed_library):
    env = {"QA_LLM_URL": closed_port_url(), "QA_LLM_MODEL": "scripted"}
    with start_app(seed_library.settings.index_dir, env=env) as url:
        context = browser.new_context()
        try:
            down = context.new_page()
            down.set_default_timeout(test_browser.TIMEOUT_MS)
            down.goto(url)
            ask(down, QUESTION, QUOTE)
            wait_for(down, "No generated answer: can't connect to http://127.0.0.1:")
            text = chat_text(down)
            assert "is the model server running?" in text and QUOTE in text and "Answer by" not in text
        finally:
            context.close()
