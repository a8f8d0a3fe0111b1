"""Adding articles from the UI: safe names, size limits, clear refusals, then an incremental build."""

from __future__ import annotations

import json
import threading
import time

import pytest

from qa import Library, QAError, Settings, articles
from qa.errors import UploadError
from qa.store import lock
from qa.uploads import MAX_UPLOAD_BYTES, safe_name, save_text, save_upload, update

from conftest import FakeEmbedder

ARTICLE = b"Lufthansa pilots walked out on Monday, grounding 800 flights across Germany.\n"


@pytest.mark.parametrize(
    ("name", "saved"),
    [
        ("../../etc/passwd", "etc-passwd.txt"),
        ("/etc/cron.d/evil.md", "etc-cron.d-evil.md"),
        ("..\\..\\Windows\\system.ini.txt", "Windows-system.ini.txt"),
        ("C:\\Users\\me\\Café report.MD", "Users-me-Café-report.MD"),
        (".bashrc", "bashrc.txt"),
        ("notes", "notes.txt"),
        ("my story .html", "my-story.html"),
        ("a\x00b\nc.txt", "a-b-c.txt"),
        ("...", "upload.txt"),
        ("", "upload.txt"),
        ("x" * 300 + ".jsonl", "x" * 94 + ".jsonl"),
    ],
)
def test_uploaded_names_become_harmless_file_names_in_the_folder(tmp_path, name, saved):
    folder = tmp_path / "collection" / "uploads"
    assert safe_name(name) == saved
    path = save_upload(folder, name, ARTICLE if not saved.endswith(".jsonl") else b'{"text": "Hi there."}\n')
    assert path == folder / saved and path.read_bytes()
    assert path.resolve().parent == folder.resolve()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [saved]


def big(n: int) -> bytes:
    return (b"Words for a very long article. " * (n // 31 + 1))[:n]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        (
            "report.pdf",
            b"%PDF-1.7",
            "'report.pdf' was not added: qa reads .txt, .md, .html and .jsonl files, not .pdf.",
        ),
        (
            "huge.txt",
            big(MAX_UPLOAD_BYTES + 1),
            "'huge.txt' was not added: it is 10.1 MB; one article can be at most 10 MB.",
        ),
        ("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "'photo.txt' was not added: it looks binary, not text."),
        ("latin1.md", "Café".encode("latin-1"), "'latin1.md' was not added: it is not valid UTF-8 (byte 3)"),
        ("empty.txt", b"", "'empty.txt' was not added: it has no text."),
        ("spaces.md", b"   \n\n ", "'spaces.md' was not added: it has no text."),
        ("script.html", b"<html><script>alert(1)</script></html>", "'script.html' was not added: it has no text."),
        ("bad.jsonl", b"{oops\n", "'bad.jsonl' was not added: line 1 is not valid JSON"),
        (
            "../../x.jsonl",
            b'{"title": "no text"}\n',
            "'../../x.jsonl' was not added: line 1 has no \"text\" string field.",
        ),
    ],
)
def test_refused_uploads_say_why_and_write_nothing(tmp_path, name, data, message):
    with pytest.raises(UploadError) as e:
        save_upload(tmp_path / "uploads", name, data)
    assert str(e.value).startswith(message), str(e.value)
    assert isinstance(e.value, QAError)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # not even a temp file


def test_upload_at_the_limit_is_accepted_and_the_reader_agrees(tmp_path):
    path = save_upload(tmp_path, "long.txt", big(MAX_UPLOAD_BYTES))
    assert path.stat().st_size == MAX_UPLOAD_BYTES <= articles.MAX_ARTICLE_BYTES


def test_same_name_never_overwrites_but_same_content_is_not_duplicated(tmp_path):
    first = save_upload(tmp_path, "story.txt", ARTICLE)
    assert save_upload(tmp_path, "story.txt", ARTICLE) == first
    second = save_upload(tmp_path, "story.txt", b"Another story about trains.\n")
    assert (first.name, second.name) == ("story.txt", "story-2.txt")
    assert first.read_bytes() == ARTICLE


def test_pasted_text_becomes_a_markdown_article_with_its_title(tmp_path):
    title = 'Strike: "Lufthansa" --- grounds 800 flights # today'
    path = save_text(tmp_path, title, "Pilots walked out on Monday.\n\nThe union wants a better pension.")
    assert path.name == "strike-lufthansa-grounds-800-flights-today.md"
    [article] = articles.read([path])
    assert article.title == title
    assert article.text == "Pilots walked out on Monday.\n\nThe union wants a better pension."


def test_pasted_text_without_title_uses_its_first_line_and_empty_text_is_refused(tmp_path):
    assert save_text(tmp_path, "  ", "Markets fell sharply.\nMore text.").name == "markets-fell-sharply.md"
    with pytest.raises(UploadError, match="The text was not added: it is empty"):
        save_text(tmp_path, "Title", " \n ")
    with pytest.raises(UploadError, match="one article can be at most 10 MB"):
        save_text(tmp_path, "Huge", "word " * (MAX_UPLOAD_BYTES // 5 + 1))


def test_upload_is_searchable_at_once_and_survives_a_restart(tiny_corpus, tmp_path, real_embedder):
    index = tmp_path / "index"
    lib = Library.build([tiny_corpus], index_dir=index, embedder=real_embedder)
    assert lib.sources == [str(tiny_corpus.resolve())]
    save_upload(tiny_corpus / "uploads", "lufthansa.txt", ARTICLE)
    save_text(tiny_corpus / "uploads", "Rail strike", "Train drivers in France stopped work for two days.")
    report = update(lib, tiny_corpus / "uploads")
    assert (report.added, report.changed, report.removed, report.unchanged) == (2, 0, 0, 3)
    assert lib.search("How many flights were grounded?", k=1)[0].article_id == "articles/uploads/lufthansa.txt"
    restarted = Library.open(index, embedder=real_embedder)
    assert restarted.search("Who stopped work in France?", k=1)[0].title == "Rail strike"
    assert restarted.info().articles == 5


def test_a_folder_outside_the_collection_joins_it(tiny_corpus, tmp_path):
    lib = Library.build(
        [tiny_corpus],
        index_dir=tmp_path / "index",
        embedder=FakeEmbedder(),
        settings=Settings(mode="lexical", answer_candidates=0),
    )
    save_upload(tmp_path / "inbox", "oil.txt", b"Oil rose above 100 dollars a barrel.\n")
    assert update(lib, tmp_path / "inbox").added == 1
    assert update(lib).unchanged == 4  # the next update keeps the new folder
    assert lib.search("oil barrel", k=1)[0].article_id == "inbox/oil.txt"


def test_update_waits_for_a_running_build(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    lib = Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder())
    save_upload(tiny_corpus, "oil.txt", b"Oil rose above 100 dollars a barrel.\n")
    held = threading.Event()

    def other_build():
        with lock(index):
            held.set()
            time.sleep(0.5)

    t = threading.Thread(target=other_build)
    t.start()
    held.wait()
    began = time.monotonic()
    assert update(lib, wait=10).added == 1
    assert time.monotonic() - began >= 0.3
    t.join()


def test_update_needs_to_know_the_collection_and_a_plain_build_records_it(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder())
    manifest_path = index / (index / "CURRENT").read_text().strip() / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest.pop("sources") == [str(tiny_corpus.resolve())]
    manifest_path.write_text(json.dumps(manifest))  # as an index built before sources were recorded
    lib = Library.open(index, embedder=FakeEmbedder())
    with pytest.raises(UploadError, match="does not record which folders it was built from"):
        update(lib)
    save_upload(tmp_path / "inbox", "oil.txt", b"Oil rose above 100 dollars a barrel.\n")
    with pytest.raises(UploadError, match="does not record"):  # never a rebuild from the new folder alone
        update(lib, tmp_path / "inbox")
    assert Library.open(index, embedder=FakeEmbedder()).info().articles == 3
    rebuilt = Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder())
    assert rebuilt.last_build.chunks_embedded == 0 and lib.sources == [str(tiny_corpus.resolve())]
    assert update(lib).unchanged == 3


def test_update_keeps_the_index_chunking_whatever_the_app_was_started_with(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=Settings(chunk_tokens=16))
    app = Library.open(index, embedder=FakeEmbedder())  # default chunk_tokens=128
    save_upload(tiny_corpus, "oil.txt", b"Oil rose above 100 dollars a barrel.\n")
    report = update(app)
    assert (report.added, report.unchanged, report.full_reason, report.chunks_embedded) == (1, 3, "", 1)
    assert app.manifest["chunk_tokens"] == 16
