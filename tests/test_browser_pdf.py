"""A PDF in a real browser: the chat's citation and the passage's card say the page the answer is on."""

from __future__ import annotations

import pytest

from qa import Library

from tests import test_browser
from tests.test_browser import ask
from tests.test_pdf import QUESTION, write_report

pytestmark = pytest.mark.browser
browser, page = test_browser.browser, test_browser.page  # its Chromium and page, for this module's app


@pytest.fixture(scope="module")
def app_url(start_app, real_embedder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pdf-app") / "articles"
    write_report(folder, title="Tarn harbour report 2024", date="D:20240401093000Z")
    index = folder.parent / "index"
    Library.build([folder], index_dir=index, embedder=real_embedder).close()
    with start_app(index) as url:
        yield url


def test_the_chat_and_the_passages_say_the_page_of_a_pdf(page):
    ask(page, QUESTION, "reopened to shipping on 14 March 2024")
    assert "Tarn harbour report 2024 — 2024-04-01, p. 3" in page.locator("#qa-chat").inner_text()
    card = page.locator("#qa-passages .qa-passage").first
    assert "2024-04-01 · p. 3 · score" in card.locator(".qa-meta").inner_text()
    assert "14 March 2024" in card.locator(".qa-text mark.qa-answer").inner_text()
    assert not page.dialogs and not page.outside
