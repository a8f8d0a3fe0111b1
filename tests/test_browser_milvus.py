"""The chat in a real browser, answering from a Milvus index (Milvus Lite): `python app.py --backend milvus`,
and a `qa build --backend milvus` that the app takes in while it serves (Milvus Lite serves one process)."""

from __future__ import annotations

import shutil

import pytest

from qa import Library, Settings
from qa.milvus import release

from conftest import SEEDS
from tests import test_browser
from tests.test_browser import ask
from tests.test_handoff import run_cli

pytestmark = pytest.mark.browser
browser, page = test_browser.browser, test_browser.page  # its Chromium and page, for this module's app


@pytest.fixture(scope="module")
def served(start_app, real_embedder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("milvus-articles") / "articles"
    shutil.copytree(SEEDS, folder)
    index = tmp_path_factory.mktemp("milvus") / "index"
    Library.build([folder], settings=Settings(index_dir=index, backend="milvus"), embedder=real_embedder).close()
    release()  # the app's process opens the Milvus Lite file
    with start_app(index, args=["--backend", "milvus"]) as url:
        yield url, folder, index


@pytest.fixture(scope="module")
def app_url(served):
    return served[0]


def test_the_chat_answers_from_milvus_and_from_a_build_the_app_took_in(page, served):
    _, folder, index = served
    ask(page, "Who traveled to Mexico City?", "traveled to Mexico City Friday morning")
    assert "traveled to Mexico City" in page.locator("#qa-passages mark.qa-answer").first.inner_text()
    (folder / "lighthouse.txt").write_text("The delegation toured a lighthouse in Veracruz on Saturday.\n")
    done = run_cli("build", folder, "--index", index, "--backend", "milvus")
    assert done.returncode == 0, done.stderr
    assert "in the app serving it" in done.stderr and "1 added" in done.stdout
    ask(page, "Which lighthouse did the delegation tour?", "Veracruz")
    assert "Veracruz" in page.locator("#qa-passages mark.qa-answer").first.inner_text()
    assert not page.dialogs and not page.outside
