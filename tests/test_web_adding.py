"""Adding articles from the app: safe names, size limits, clear refusals; files and pasted text saved, then indexed
in one update; the collection folder; escaped HTML."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from qa import Library, QAError, Settings, articles
from qa.errors import UploadError
from qa.web import adding
from qa.web.adding import MAX_UPLOAD_BYTES, add, collection_folder, safe_name, save_text, save_upload
from qa.web.render import NOTHING, added_html

from conftest import SEEDS, FakeEmbedder, edit_manifest

LEXICAL = Settings(mode="lexical", answer_candidates=0)


@pytest.fixture
def library(tiny_corpus, tmp_path):
    return Library.build([tiny_corpus], index_dir=tmp_path / "index", embedder=FakeEmbedder(), settings=LEXICAL)


class Reporting(FakeEmbedder):  # calls its progress function as Embedder.encode_passages does
    def encode_passages(self, texts, spans, progress=None):
        progress(0, len(texts))
        out = super().encode_passages(texts, spans)
        progress(len(texts), len(texts))
        return out


def upload(tmp_path, name: str, data: bytes) -> str:
    """A file as Gradio hands it over: in a folder of its own, under the name the browser sent."""
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / name
    path.write_bytes(data)
    return str(path)


def test_files_and_pasted_text_are_saved_then_indexed_in_one_update(library, tiny_corpus, tmp_path):
    files = [
        upload(tmp_path, "oil.txt", b"Oil rose above 100 dollars a barrel.\n"),
        upload(tmp_path, "report.docx", b"%PDF-1.7"),
        upload(tmp_path, "empty.md", b""),
    ]
    added = add(library, tiny_corpus, files, "Rail strike", "Train drivers in France stopped work.")
    assert [(shown, path.name) for shown, path in added.saved] == [
        ("oil.txt", "oil.txt"),
        ("Rail strike", "rail-strike.md"),
    ]
    assert added.refused == [
        "'report.docx' was not added: qa reads .txt, .md, .html, .jsonl and .pdf files, not .docx.",
        "'empty.md' was not added: it has no text.",
    ]
    assert (added.report.added, added.report.unchanged, added.error) == (2, 3, "")
    assert library.search("oil barrel", k=1)[0].article_id == "articles/oil.txt"
    assert library.search("train drivers France", k=1)[0].title == "Rail strike"
    status = added_html(added)
    assert "Indexed: 2 added, 0 changed" in status and "Not added (2):" in status
    assert sorted(p.name for p in tiny_corpus.iterdir()) == [
        "apple.md",
        "boeing.txt",
        "gm.md",
        "oil.txt",
        "rail-strike.md",
    ]


def test_user_text_in_the_status_is_escaped(library, tiny_corpus, tmp_path):
    title = '<img src=x onerror="alert(1)"> & <b>Harbour</b>'
    added = add(library, tiny_corpus, [upload(tmp_path, "<i>x&y.docx", b"%PDF")], title, "The harbour reopened.")
    status = added_html(added)
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; &lt;b&gt;Harbour&lt;/b&gt;" in status
    assert "&lt;i&gt;x&amp;y.docx" in status
    assert "<img" not in status and "<b>" not in status and "<i>" not in status


def test_nothing_given_says_what_to_do_and_builds_nothing(library, tiny_corpus):
    added = add(library, tiny_corpus, [], "  ", "")
    assert (added.saved, added.refused, added.report) == ([], [], None)
    assert NOTHING.split(",")[0] in added_html(added)


def test_the_same_file_again_is_not_indexed_twice(library, tiny_corpus, tmp_path):
    data = b"Oil rose above 100 dollars a barrel.\n"
    assert add(library, tiny_corpus, [upload(tmp_path, "oil.txt", data)]).report.added == 1
    again = add(library, tiny_corpus, [upload(tmp_path, "oil.txt", data)])
    assert [p.name for _, p in again.saved] == ["oil.txt"]
    assert "already in the collection" in added_html(again)


def test_a_copy_of_an_indexed_article_is_saved_but_reported_as_skipped(library, tiny_corpus, tmp_path):
    copy = (tiny_corpus / "boeing.txt").read_bytes()
    added = add(library, tiny_corpus / "uploads", [upload(tmp_path, "boeing-again.txt", copy)])
    assert added.report.added == 0
    status = added_html(added)
    assert "Saved but not indexed:" in status and "boeing-again.txt</code>: same text as" in status


def test_an_index_without_recorded_folders_refuses_instead_of_dropping_the_rest(library, tiny_corpus, tmp_path):
    index = library.settings.index_dir
    edit_manifest(index, lambda manifest: manifest.pop("sources"))
    old = Library.open(index, embedder=FakeEmbedder(), settings=LEXICAL)
    added = add(old, tmp_path / "inbox", [upload(tmp_path, "oil.txt", b"Oil rose.\n")])
    assert added.saved == [] and "Rebuild it once with `qa build FOLDER...`" in added.refused[0]
    assert not (tmp_path / "inbox").exists() and old.info().articles == 3


def test_no_folder_to_save_in_is_refused_with_the_option_to_use(library):
    added = add(library, None, [], "Title", "Some text.")
    assert added.saved == [] and "--collection DIR" in added.refused[0]


def test_the_users_own_file_name_names_the_file_harmlessly(library, tiny_corpus, tmp_path):
    files = [
        (upload(tmp_path, "passwd", b"Oil rose.\n"), "../../etc/passwd"),
        (upload(tmp_path, "x", b"%"), "<i>a</i>.exe"),
    ]
    added = add(library, tiny_corpus / "uploads", files)
    assert [(shown, path.name) for shown, path in added.saved] == [("../../etc/passwd", "etc-passwd.txt")]
    assert added.refused == [
        "'<i>a</i>.exe' was not added: qa reads .txt, .md, .html, .jsonl and .pdf files, not .exe."
    ]
    assert "“../../etc/passwd” as <code>etc-passwd.txt</code>" in added_html(added)
    assert [p for p in tmp_path.rglob("etc-passwd*")] == [tiny_corpus / "uploads" / "etc-passwd.txt"]


def test_paths_outside_the_upload_folder_are_refused_unread(library, tiny_corpus, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"The password is swordfish.\n")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    files = [(str(secret), "notes.txt"), (str(uploads / ".." / "secret.txt"), "x.txt")]
    added = add(library, tiny_corpus, files, within=uploads)
    assert added.saved == [] and added.report is None
    assert added.refused == [
        "'notes.txt' was not added: it is not a file uploaded through this page.",
        "'x.txt' was not added: it is not a file uploaded through this page.",
    ]


def test_the_app_saves_in_the_chosen_folder_else_seeds_else_the_first_folder_indexed(tmp_path):
    class Indexed:
        def __init__(self, *sources):
            self.sources = [str(s) for s in sources]

    other, single = tmp_path / "news", tmp_path / "one.txt"
    other.mkdir()
    single.write_text("One article.")
    assert collection_folder(Indexed(other, SEEDS.resolve()), "inbox", SEEDS) == Path("inbox")
    assert collection_folder(Indexed(other, SEEDS.resolve()), None, SEEDS) == SEEDS
    assert collection_folder(Indexed(other, SEEDS.resolve()), None) == other  # qa.web assumes no seeds/ of its own
    assert collection_folder(Indexed(single, other), None) == other
    assert collection_folder(Indexed(single), None) is None


# --- saving an upload or pasted text ---

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
            "report.docx",
            b"%PDF-1.7",
            "'report.docx' was not added: qa reads .txt, .md, .html, .jsonl and .pdf files, not .docx.",
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


# ---- hostile and heavy additions (issue 11) ----


@pytest.mark.parametrize("title, text", [(["a list"], "Some text."), ("Title", {"a": "dict"}), (None, 5)])
def test_a_title_or_text_that_is_not_text_is_refused_with_a_message(library, tiny_corpus, title, text):
    added = add(library, tiny_corpus, [], title, text)
    assert added.saved == [] and len(added.refused) == 1
    assert added.refused[0].startswith("The text was not added: its title and text must be text, not ")


def test_saved_articles_are_readable_like_the_collection_s_own(library, tiny_corpus, tmp_path):
    added = add(library, tiny_corpus, [upload(tmp_path, "oil.txt", b"Oil rose.\n")], "Rail strike", "Trains stopped.")
    modes = {path.name: path.stat().st_mode & 0o777 for _, path in added.saved}
    own = (tiny_corpus / "boeing.txt").stat().st_mode & 0o777  # written by this user with this umask
    assert modes == {"oil.txt": own, "rail-strike.md": own}


def test_an_addition_that_would_take_too_long_is_refused_before_it_is_saved(tiny_corpus, tmp_path):
    settings = LEXICAL.with_(max_add_seconds=2.0)
    library = Library.build([tiny_corpus], index_dir=tmp_path / "index", embedder=FakeEmbedder(), settings=settings)
    lines = "".join(json.dumps({"id": n, "text": f"Market note {n}: shares moved."}) + "\n" for n in range(5000))
    big, small = upload(tmp_path, "notes.jsonl", lines.encode()), upload(tmp_path, "one.txt", b"One short note.\n")
    added = add(library, tiny_corpus, [big, small])
    assert [shown for shown, _ in added.saved] == ["one.txt"]
    assert added.refused == [
        "'notes.jsonl' was not added: indexing it would take longer than the app's limit of 2 seconds "
        "(QA_MAX_ADD_SECONDS) here: its first 61 articles alone would. Index it with `qa build`, or split it "
        "into smaller files."  # 61 articles at 30 a second pass 2 s: the other 4,939 are never read
    ]
    assert not (tiny_corpus / "notes.jsonl").exists() and added.report.added == 1


def test_pasted_text_over_the_paste_limit_is_refused(library, tiny_corpus):
    added = add(library, tiny_corpus, [], "Huge", "word " * (adding.MAX_PASTE_CHARS // 5 + 1))
    assert added.refused == [
        f"The text was not added: it is {adding.MAX_PASTE_CHARS + 5:,} characters; paste at most "
        f"{adding.MAX_PASTE_CHARS:,}, or upload it as a file."
    ]


def test_the_indexing_of_an_addition_reports_its_progress(library, tiny_corpus, tmp_path):
    reporting = Library.open(library.settings.index_dir, embedder=Reporting(), settings=LEXICAL)
    seen = []
    add(
        reporting, tiny_corpus, [upload(tmp_path, "oil.txt", b"Oil rose.\n")], progress=lambda d, t: seen.append((d, t))
    )
    assert seen[0] == (0, 1) and seen[-1] == (1, 1)


# ---- review fixes: junk lines, one budget per press, pasted surrogates, the umask, the panel's handler ----


def slow_library(tiny_corpus, tmp_path, seconds: float) -> Library:
    settings = LEXICAL.with_(max_add_seconds=seconds)
    return Library.build([tiny_corpus], index_dir=tmp_path / "index", embedder=FakeEmbedder(), settings=settings)


def test_a_jsonl_of_junk_lines_is_refused_after_the_first_ones_not_parsed_whole(tiny_corpus, tmp_path, monkeypatch):
    library = slow_library(tiny_corpus, tmp_path, 2.0)
    made = []
    original = articles.Skipped.__init__

    def counting(self, *args, **kwargs):
        made.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(articles.Skipped, "__init__", counting)
    junk = b'{"text": "Shares rose on Monday."}\n' + b"1\n" * 200_000
    added = add(library, tiny_corpus, [upload(tmp_path, "junk.jsonl", junk)])
    assert added.saved == [] and 60 <= len(made) < 100, len(made)  # 60 passages' worth at 30 a second, then refused
    assert added.refused == [
        "'junk.jsonl' was not added: indexing it would take longer than the app's limit of 2 seconds "
        "(QA_MAX_ADD_SECONDS) here: its first 1 articles and 60 skipped lines alone would. The first skipped, "
        'line 2, has no "text" string field. Index it with `qa build`, or split it into smaller files.'
    ]


def test_a_jsonl_of_one_line_copied_is_refused_early(tiny_corpus, tmp_path):
    library = slow_library(tiny_corpus, tmp_path, 2.0)
    copies = b'{"text": "Shares rose on Monday."}\n' * 100_000
    added = add(library, tiny_corpus, [upload(tmp_path, "copies.jsonl", copies)])
    assert added.saved == [] and "its first 1 articles and 60 skipped lines alone would" in added.refused[0]
    assert "same text as" in added.refused[0]


def test_the_time_limit_is_for_the_whole_press_not_each_file(tiny_corpus, tmp_path):
    library = slow_library(tiny_corpus, tmp_path, 2.0)
    text = "Harbour note: the ferries left on time and the pier reopened. " * 400  # 25,200 characters: 39 passages
    files = [upload(tmp_path, f"note-{n}.txt", f"{n}. {text}".encode()) for n in range(3)]
    added = add(library, tiny_corpus, files, "Pier", text)
    assert [shown for shown, _ in added.saved] == ["note-0.txt"]  # 39 passages fit in 60; 78 would not
    assert added.refused[0] == (
        "'note-1.txt' was not added: indexing it would take longer than the app's limit of 2 seconds "
        "(QA_MAX_ADD_SECONDS) here: its first 1 articles, with what this addition saved before it, would. "
        "Index it with `qa build`, or split it into smaller files."
    )
    assert len(added.refused) == 3 and added.refused[2].startswith("'Pier' was not added: indexing it would")


def test_small_files_still_fit_together_under_the_limit(tiny_corpus, tmp_path):
    library = slow_library(tiny_corpus, tmp_path, 2.0)
    files = [upload(tmp_path, f"n{n}.txt", f"Note {n} about the harbour.\n".encode()) for n in range(10)]
    added = add(library, tiny_corpus, files, "Pier", "The pier reopened.")
    assert added.refused == [] and len(added.saved) == 11 and added.report.added == 11


@pytest.mark.parametrize(("bad", "read"), [("\ud800", "\ufffd"), ("\x00", "")])
def test_pasted_text_with_a_lone_surrogate_or_nul_is_saved_as_the_reader_reads_it(tmp_path, bad, read):
    path = save_text(tmp_path, f"Harbour{bad} news", f"The pier{bad} reopened on Monday.")
    [article] = articles.read([path])
    assert article.title == f"Harbour{read} news" and article.text == f"The pier{read} reopened on Monday."
    path.read_bytes().decode("utf-8")  # strict UTF-8


def test_saving_never_touches_the_process_umask(tmp_path, monkeypatch):
    def umask(mask):
        raise AssertionError("os.umask is process-wide: another thread's files would get this mask")

    monkeypatch.setattr(adding.os, "umask", umask)
    path = save_upload(tmp_path, "oil.txt", b"Oil rose.\n")
    assert path.read_bytes() == b"Oil rose.\n" and not list(tmp_path.glob(".upload-*"))


def panel_handler(library, folder):
    """The "Add to the collection" button's handler, as the page calls it."""
    from qa.web.ui import build_ui

    demo = build_ui(library, 1, str(folder))
    [fn] = [f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "add_articles"]
    return fn


def test_the_panel_clears_its_files_after_a_press_and_reports_progress(library, tiny_corpus, tmp_path, monkeypatch):
    from gradio import utils as gr_utils

    uploads = tmp_path / "gradio"
    uploads.mkdir()
    monkeypatch.setattr(gr_utils, "get_upload_folder", lambda: str(uploads))
    reporting = Library.open(library.settings.index_dir, embedder=Reporting(), settings=LEXICAL)
    handler = panel_handler(reporting, tiny_corpus)
    files = [
        {"path": upload(uploads, "oil.txt", b"Oil rose above 100 dollars a barrel.\n"), "orig_name": "oil.txt"},
        {"path": upload(uploads, "report.docx", b"%PDF-1.7"), "orig_name": "report.docx"},
    ]
    seen = []

    def progress(value, desc=None, unit=None):
        seen.append((value, desc, unit))

    status, files_box, title, text, _ = handler(files, "Rail strike", "Trains stopped.", progress=progress)
    assert "Indexed: 2 added" in status and "Not added (1)" in status
    assert files_box is None  # Gradio's copies are deleted: a second press must not send their paths
    assert not [p for p in uploads.rglob("*") if p.is_file()]
    assert seen and all(desc == "Indexing" and unit == "passages" for _, desc, unit in seen), seen
    assert seen[-1][0][0] == seen[-1][0][1] > 0  # done == total at the end
    again = handler(None, title if isinstance(title, str) else "", "", progress=progress)[0]
    assert "could not be read" not in again
