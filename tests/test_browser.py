"""The chat UI in a real browser: Debian's Chromium driven by Playwright against `python app.py`.

Without Chromium or Playwright these tests are skipped, except when CI=true: there they fail.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import ROOT, SEEDS

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 60_000
# Markup in an article: it must show as text, run nothing and load nothing.
HOSTILE = """---
title: "Harbour <script>alert(1)</script> festival <b>closes</b>"
source: Test <i>Wire</i>
date: 2024-05-01
url: "javascript:window.__xss=2"
---
The harbour festival closed with fireworks over the old lighthouse on Sunday night. <script>alert(1)</script> \
Organisers pinned a poster ![x](http://example.com/x.png) to the lighthouse door. \
<img src=x onerror="window.__xss=1"> The lighthouse keeper counted four thousand visitors at the harbour festival.
"""


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (browser tests must run in CI)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed: pip install -e '.[test]'")
    if not Path(CHROMIUM).exists():
        _unavailable(f"No Chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def app_url(start_app, real_embedder, tmp_path_factory):
    """The app serving the seed article and a hostile one."""
    from qa import Library

    folder = tmp_path_factory.mktemp("browser-articles")
    shutil.copytree(SEEDS, folder / "seeds")
    (folder / "harbour.md").write_text(HOSTILE, encoding="utf-8")
    index = tmp_path_factory.mktemp("browser") / "index"
    Library.build([folder], index_dir=index, embedder=real_embedder).close()
    with start_app(index) as url:
        yield url


@pytest.fixture
def page(browser, app_url):
    """A fresh page (a new conversation) that records dialogs and any request that leaves 127.0.0.1."""
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.dialogs, page.outside = [], []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))

    def guard(route):
        host = urlparse(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            page.outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.goto(app_url)
    page.locator("#qa-question textarea").wait_for()
    yield page
    context.close()


def ask(page, question: str, expect: str) -> None:
    """Type a question, press Enter and wait until the chat shows ``expect``."""
    before = page.locator("#qa-chat .message").count()
    page.locator("#qa-question textarea").fill(question)
    page.locator("#qa-question textarea").press("Enter")
    page.wait_for_function(
        "([n, text]) => document.querySelectorAll('#qa-chat .message').length > n"
        " && document.querySelector('#qa-chat').innerText.includes(text)",
        arg=[before, expect],
    )


def test_question_shows_answer_sentence_and_passages_then_a_follow_up(page):
    ask(page, "Who traveled to Mexico City?", "traveled to Mexico City Friday morning")
    chat = page.locator("#qa-chat").inner_text()
    assert "[1]" in chat
    panel = page.locator("#qa-passages")
    assert "Blinken in Mexico City" in panel.inner_text()
    assert "[1]" in panel.inner_text() and "OAN Newsroom" in panel.inner_text()
    assert "traveled to Mexico City" in panel.locator("mark.qa-answer").first.inner_text()

    ask(page, "What did he say about the cycle of crime?", "This is a cycle that continues")
    assert "This is a cycle that continues" in page.locator("#qa-passages").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "two-turn.png"), full_page=True)
    assert not page.dialogs and not page.outside


def test_a_question_the_articles_do_not_answer_shows_the_closest_passages_marked(page):
    ask(page, "Who painted the Mona Lisa?", "couldn't find anything in the articles")
    panel = page.locator("#qa-passages")
    assert "Not in the articles" in panel.inner_text()
    cards = panel.locator(".qa-passage").count()
    assert cards >= 1 and panel.locator(".qa-closest").count() == cards  # each shown, each marked
    assert "closest, not an answer" in panel.inner_text()
    assert page.locator("#qa-chat blockquote").count() == 0  # nothing quoted as an answer


def test_empty_question_gets_a_short_message(page):
    page.locator("#qa-ask").click()
    page.get_by_text("Please type a question first").wait_for()
    assert page.locator("#qa-chat .message").count() == 1


def test_article_markup_shows_as_text_and_runs_nothing(page):
    ask(page, "How many visitors did the lighthouse keeper count at the harbour festival?", "lighthouse keeper")
    panel = page.locator("#qa-passages")
    panel.get_by_text("four thousand visitors").first.wait_for()
    text = panel.inner_text()
    assert "<script>alert(1)</script>" in text
    assert "![x](http://example.com/x.png)" in text
    assert '<img src=x onerror="window.__xss=1">' in text
    assert "Harbour <script>alert(1)</script> festival <b>closes</b>" in text
    assert "Harbour <script>alert(1)</script> festival <b>closes</b>" in page.locator("#qa-chat").inner_text()
    ask(page, "Where did the organisers pin a poster?", "to the lighthouse door")
    assert "![x](http://example.com/x.png)" in page.locator("#qa-chat").inner_text()
    assert page.evaluate("window.__xss") is None
    assert page.locator("img[src*='example.com'], #qa-passages img, #qa-passages script, #qa-chat script").count() == 0
    assert not page.dialogs, f"a dialog opened: {page.dialogs}"
    assert not page.outside, f"the page reached outside 127.0.0.1: {page.outside}"


def open_article(page, n: int = 1):
    """Open the whole article under passage ``n``; its text box."""
    card = page.locator(f"#qa-passages .qa-passage[data-n='{n}']")
    card.locator("details.qa-article summary").click()
    box = card.locator(".qa-article-text")
    box.wait_for()
    return card, box


def test_a_passage_opens_its_whole_article_scrolled_to_it(page):
    page.locator("#qa-k input[type=number]").fill("1")  # one chunk, not the seed merged whole
    page.locator("#qa-k input[type=number]").press("Enter")
    # A question that stands alone: "What did he say ...?" with no conversation is judged not in the articles.
    ask(page, "What cycle continues because of activity on both sides of the border?", "This is a cycle that continues")
    card, box = open_article(page)
    assert "Blinken in Mexico City" in card.locator(".qa-article-head").inner_text()
    assert "OAN Newsroom" in card.locator(".qa-article-head").inner_text()
    text = box.inner_text()
    assert text.startswith("OAN Newsroom") and "Mayorkas" in text  # the article whole, not the passage
    assert "This is a cycle that continues" in box.locator(".qa-here mark.qa-answer").inner_text()
    page.wait_for_function("() => document.querySelector('#qa-passages .qa-article-text').scrollTop > 0")
    shown = page.evaluate(
        """() => { const box = document.querySelector('#qa-passages .qa-article-text');
                   const mark = box.querySelector('.qa-here mark');
                   const a = box.getBoundingClientRect(), m = mark.getBoundingClientRect();
                   return m.top >= a.top && m.top < a.bottom; }"""
    )
    assert shown, "the answering sentence is scrolled into the article's view"
    assert page.locator("#qa-chat .message").count() == 2  # still the chat: nothing left it


def test_an_opened_article_shows_markup_as_text_and_no_javascript_link(page):
    ask(page, "How many visitors did the lighthouse keeper count at the harbour festival?", "lighthouse keeper")
    card, box = open_article(page)
    head = card.locator(".qa-article-head")
    assert "Harbour <script>alert(1)</script> festival <b>closes</b>" in head.inner_text()
    assert '<img src=x onerror="window.__xss=1">' in box.inner_text()
    assert page.locator("#qa-passages a[href^='javascript'], #qa-passages script, #qa-passages img").count() == 0
    head.get_by_text("festival").first.click()  # the title is text, not a link: nothing runs
    assert page.evaluate("window.__xss") is None and not page.dialogs and not page.outside
