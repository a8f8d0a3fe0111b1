"""PDFs: read page by page (real PDF files, written by tests/pdfs.py), each passage with its page, on every
interface and both backends; scanned, encrypted, damaged and empty PDFs skipped, each saying why."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from qa import Library, Settings, articles, chat
from qa.errors import UploadError
from qa.milvus import release
from qa.pdf import tidy
from qa.web.adding import save_upload
from qa.web.render import passages_html, reply_markdown

from conftest import ROOT, FakeEmbedder
from tests import pdfs

# A report of four pages: the answers are on pages 2 and 3, page 4 is a scanned picture (no text).
REPORT = [
    [
        "The Tarn harbour report covers the storm season of 2024 and what the port authority did about",
        "it, from the first warnings in February to the spring.",
    ],
    [
        "The storm of early March flooded the quays and damaged two cranes that load the container",
        "ships. The port authority closed the harbour to all shipping on 2 March.",
    ],
    [
        "Repairs took twelve days. The Tarn harbour reopened to shipping on 14 March 2024, and the first",
        "ship to come in was the ferry Marguerite with 77 goats on board.",
    ],
    None,
]
QUESTION = "When did the Tarn harbour reopen to shipping?"


def write_report(folder: Path, name: str = "tarn-report.pdf", **kw) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(pdfs.write(REPORT, **kw))
    return path


# ---- reading ----


def test_a_pdf_is_read_page_by_page_with_its_title_and_date(tmp_path):
    path = write_report(tmp_path / "docs", title="Tarn harbour report 2024", date="D:20240401093000Z")
    (article,) = articles.read([path])
    assert (article.title, article.date, article.id) == ("Tarn harbour report 2024", "2024-04-01", "tarn-report.pdf")
    assert len(article.pages) == 4
    for n, lines in enumerate(REPORT[:3]):  # each page starts where the article says, its lines joined into one
        page = article.text[article.pages[n] :].split("\n\n")[0]
        assert page == " ".join(lines)
    assert article.pages[3] == len(article.text)  # the scanned last page has no text: it starts at the end
    assert article.text.endswith("77 goats on board.")


def test_running_headers_footers_and_page_numbers_are_left_out(tmp_path):
    path = tmp_path / "numbered.pdf"
    pages = [[f"Tarn harbour report, page {n}", *lines, str(n)] for n, lines in enumerate(REPORT[:3], 1)]
    path.write_bytes(pdfs.write(pages))
    (article,) = articles.read([path])
    assert "Tarn harbour report, page" not in article.text
    assert [article.text[start:].split("\n\n")[0] for start in article.pages] == [" ".join(x) for x in REPORT[:3]]


def test_a_sentence_that_goes_on_over_a_page_break_stays_one_sentence(tmp_path):
    path = tmp_path / "over.pdf"
    pages = [["The port authority closed the harbour to"], ["all shipping on 2 March."], ["Ships waited."]]
    path.write_bytes(pdfs.write(pages))
    (article,) = articles.read([path])
    assert article.text == "The port authority closed the harbour to all shipping on 2 March.\n\nShips waited."
    assert article.pages == (0, len("The port authority closed the harbour to "), article.text.index("Ships"))


@pytest.mark.parametrize("title", ["", "  ", "Microsoft Word - rpt_v3.docx", "untitled"])
def test_a_pdf_without_a_title_is_named_after_its_file(tmp_path, title):
    (article,) = articles.read([write_report(tmp_path, "harbour_report-2024.pdf", title=title)])
    assert (article.title, article.date) == ("harbour report 2024", "")


def test_other_formats_have_no_pages_and_keep_their_hashes(tiny_corpus):
    found = list(articles.read([tiny_corpus]))
    assert found and all(a.pages == () for a in found)
    # The hash of an article without pages is the one qa gave it before it read PDFs: no index sees all changed.
    a = articles.Article("x", "T", "Some text.")
    assert a.hash == "7366fb2d40adc07f7a459e876c908adb"
    assert articles.Article("x", "T", "Some text.", pages=(0,)).hash != a.hash


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ex\x02periments were run\r\nby the team.", "Experiments were run by the team."),  # PDFium's hyphen mark
        ("The ﬁrst ﬂight", "The first flight"),  # ligatures spelled out
        (
            "A heading\r\nThe text of a paragraph that is long, and\r\ngoes on.",
            "A heading\nThe text of a paragraph that is long, and goes on.",
        ),  # fmt: skip
        ("One sentence ends.\r\nAnother starts.", "One sentence ends.\nAnother starts."),
        ("  \r\n \r\n", ""),
    ],
)
def test_page_text_is_tidied(raw, expected):
    assert tidy(raw) == expected


BAD = {
    "scanned.pdf": (
        pdfs.write([None, None]),
        "has no text layer in its 2 page(s) (a scanned or image-only PDF?); run OCR on it (e.g. ocrmypdf) "
        "and add the result",
    ),
    "locked.pdf": (
        pdfs.encrypted(pdfs.write(REPORT)),
        "is an encrypted PDF; save a copy without a password and add that",
    ),
    "cut.pdf": (
        pdfs.write(REPORT)[:900],
        "is not a PDF qa can read (Data format error); open it and save it again as PDF",
    ),
    "junk.pdf": (
        b"%PDF-1.7\nnot really a PDF",
        "is not a PDF qa can read (Data format error); open it and save it again as PDF",
    ),  # fmt: skip
    "empty.pdf": (b"", "is an empty file"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_pdf_that_cannot_be_read_is_skipped_saying_why_and_the_rest_is_read(tmp_path, caplog, name):
    folder = tmp_path / "docs"
    write_report(folder)
    data, reason = BAD[name]
    (folder / name).write_bytes(data)
    skipped = []
    found = list(articles.read([folder], skipped))
    assert [a.id for a in found] == ["docs/tarn-report.pdf"]
    assert skipped == [articles.Skipped(str(folder / name), reason)]
    assert f"skipped {folder / name}: {reason}" in caplog.text


def test_a_pdf_with_a_password_it_opens_without_is_read(tmp_path):
    """Encrypted with an empty user password (only printing or copying restricted): it opens, and is read."""
    path = tmp_path / "open.pdf"
    path.write_bytes(pdfs.encrypted(pdfs.write(REPORT), password=""))
    (article,) = articles.read([path])
    assert "77 goats" in article.text and len(article.pages) == 4


# ---- the real path: the real model, a real index on disk, the CLI ----


@pytest.fixture(scope="module")
def report_library(tmp_path_factory, real_embedder):
    folder = tmp_path_factory.mktemp("pdf") / "articles"
    write_report(folder, title="Tarn harbour report 2024", date="D:20240401093000Z")
    (folder / "boeing.txt").write_text("Boeing delayed the 787 Dreamliner again. The first delivery moves to 2009.\n")
    return Library.build([folder], index_dir=folder.parent / "index", embedder=real_embedder)


def test_a_passage_of_a_pdf_says_its_page(report_library):
    top = report_library.search(QUESTION, k=3)[0]
    assert top.title == "Tarn harbour report 2024" and "14 March 2024" in top.highlight
    assert top.page == 3
    assert top.as_dict()["page"] == 3 and json.loads(json.dumps(top.as_dict()))["page"] == 3
    other = report_library.search("When is the Dreamliner delivered?", k=1)[0]
    assert other.article_id.endswith("boeing.txt") and other.page is None and other.as_dict()["page"] is None


def test_the_page_is_where_the_answering_sentence_is(report_library):
    """One passage holds pages 1 to 3 (the report is short): its page follows the sentence that answers."""
    closed = report_library.search("When did the port authority close the harbour?", k=1)[0]
    assert "2 March" in closed.highlight and closed.page == 2
    goats = report_library.search("How many goats did the ferry Marguerite carry?", k=1)[0]
    assert "77 goats" in goats.highlight and goats.page == 3


def test_the_chat_and_the_panel_cite_the_page(report_library):
    answer = chat.ask(report_library, QUESTION, k=2)
    assert answer.relevant and answer.passages[0].page == 3
    assert "*Tarn harbour report 2024* — 2024-04-01, p. 3" in reply_markdown(answer)
    assert "2024-04-01 · p. 3 · score" in passages_html(answer)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    return subprocess.run(
        [sys.executable, "-m", "qa.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_qa_search_shows_the_page(report_library):
    index = str(report_library.settings.index_dir)
    run = run_cli("search", QUESTION, "--index", index, "-k", "1", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["passages"][0]["page"] == 3
    run = run_cli("search", QUESTION, "--index", index, "-k", "1")
    assert run.returncode == 0, run.stderr
    assert "[1] Tarn harbour report 2024 (2024-04-01 · p. 3)" in run.stdout


def test_qa_build_lists_the_pdfs_it_skipped_and_why(tmp_path):
    folder = tmp_path / "articles"
    write_report(folder)
    (folder / "locked.pdf").write_bytes(BAD["locked.pdf"][0])
    (folder / "scanned.pdf").write_bytes(BAD["scanned.pdf"][0])
    run = run_cli("build", str(folder), "--index", str(tmp_path / "index"), "--no-app")
    assert run.returncode == 0, run.stderr
    assert f"skipped {folder / 'locked.pdf'}: is an encrypted PDF" in run.stderr
    assert f"skipped {folder / 'scanned.pdf'}: has no text layer" in run.stderr
    assert "1 added" in run.stdout


def test_the_app_takes_a_pdf_and_refuses_one_it_cannot_read_saying_why(tmp_path):
    folder = tmp_path / "added"
    assert save_upload(folder, "Tarn report.pdf", pdfs.write(REPORT)).name == "Tarn-report.pdf"
    for name in ("locked.pdf", "scanned.pdf"):
        with pytest.raises(UploadError) as refused:
            save_upload(folder, name, BAD[name][0])
        assert str(refused.value) == f"'{name}' was not added: it {BAD[name][1]}."
    with pytest.raises(UploadError, match=r"'big.pdf' was not added: it is over 100 MB, the most the app takes"):
        save_upload(folder, "big.pdf", b"%PDF-1.7\n" + b" " * (101 * 2**20))
    assert sorted(p.name for p in folder.iterdir()) == ["Tarn-report.pdf"]


# ---- the index: pages kept by updates, and an index from before PDFs ----

LEXICAL = Settings(mode="lexical", answer_candidates=0)


def test_an_update_keeps_pages_and_an_index_from_before_pdfs_still_opens(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    Library.build([tiny_corpus], settings=LEXICAL.with_(index_dir=index), embedder=FakeEmbedder())
    # As qa wrote it before it read PDFs: no page column.
    (data,) = index.glob("data-*")
    with sqlite3.connect(data / "meta.sqlite") as db:
        db.execute("ALTER TABLE articles DROP COLUMN pages")
    old = Library.open(index, embedder=FakeEmbedder(), settings=LEXICAL)
    hit = old.search("Dreamliner delivery", k=1)[0]
    assert hit.article_id == "articles/boeing.txt" and hit.page is None
    assert old.check() == []
    old.close()
    write_report(tiny_corpus)  # an update adds the PDF to the old index: the column is added in place
    lib = Library.build([tiny_corpus], settings=LEXICAL.with_(index_dir=index), embedder=FakeEmbedder())
    assert (lib.last_build.added, lib.last_build.unchanged) == (1, 3)
    assert [p.page for p in lib.search("storm flooded quays cranes", k=1, highlight=True)] == [2]
    assert lib.search("Dreamliner delivery", k=1)[0].page is None
    assert lib.check() == []


# ---- Milvus (as tests/test_milvus.py sets it up: Milvus Lite in the index directory) ----


@pytest.fixture
def _released():
    yield
    release()


def test_milvus_keeps_the_page_of_each_passage_through_the_real_model(tmp_path, real_embedder, _released):
    folder = tmp_path / "articles"
    write_report(folder)
    (folder / "boeing.txt").write_text("Boeing delayed the 787 Dreamliner again. The first delivery moves to 2009.\n")
    lib = Library.build(
        [folder], settings=Settings(backend="milvus", index_dir=tmp_path / "index"), embedder=real_embedder
    )
    top = lib.search(QUESTION, k=3)[0]
    assert "14 March 2024" in top.highlight and top.page == 3 and top.as_dict()["page"] == 3
    assert lib.search("When is the Dreamliner delivered?", k=1)[0].page is None
    closed = lib.search("When did the port authority close the harbour?", k=1)[0]
    assert "2 March" in closed.highlight and closed.page == 2
    assert lib.check() == []


def test_a_milvus_collection_from_before_pdfs_is_still_updated_then_a_full_build_gives_pages(
    tiny_corpus, tmp_path, monkeypatch, caplog, _released
):
    from pymilvus import CollectionSchema

    add_field = CollectionSchema.add_field

    def without_pages(schema, name, *args, **kw):
        return schema if name == "pages" else add_field(schema, name, *args, **kw)

    with monkeypatch.context() as m:  # a collection as qa made them before it read PDFs: no pages field
        m.setattr(CollectionSchema, "add_field", without_pages)
        settings = LEXICAL.with_(backend="milvus", index_dir=tmp_path / "index")
        Library.build([tiny_corpus], settings=settings, embedder=FakeEmbedder())
    write_report(tiny_corpus)
    lib = Library.build([tiny_corpus], settings=settings, embedder=FakeEmbedder())
    assert (lib.last_build.added, lib.last_build.unchanged) == (1, 3)
    assert "was built before qa kept the pages of PDFs" in caplog.text and "`qa build --full`" in caplog.text
    hit = lib.search("storm flooded quays cranes", k=1, highlight=True)[0]
    assert hit.article_id == "articles/tarn-report.pdf" and hit.page is None
    lib = Library.build([tiny_corpus], settings=settings, embedder=FakeEmbedder(), full=True)
    assert [p.page for p in lib.search("storm flooded quays cranes", k=1, highlight=True)] == [2]
    assert [p.page for p in lib.search("ferry Marguerite goats", k=1, highlight=True)] == [3]
    assert lib.check() == []
