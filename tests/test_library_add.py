"""Library.add, what the "Add articles" panel runs: an addition reads only the files it saved, and leaves the index
as re-reading the whole collection would (ids, chunking, sources, report, copies skipped)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from qa import Library, Settings, articles, indexer
from qa.errors import UploadError
from qa.store import Store
from qa.web.adding import add, save_upload
from qa.web.render import added_html

from conftest import FakeEmbedder

LEXICAL = Settings(mode="lexical", answer_candidates=0)
OIL = b"Oil rose above 100 dollars a barrel on Tuesday.\n"
NOTES = b'{"id": "n1", "text": "Gold fell for a third day."}\n{"id": "n2", "text": "Rain closed the harbour."}\n'


def write_collection(folder: Path, n: int = 50) -> Path:
    """``n`` short articles of their own text, .md and .txt, in five sub-folders and the folder itself."""
    for i in range(n):
        sub = folder / (f"section-{i % 5}" if i % 6 else "")
        sub.mkdir(parents=True, exist_ok=True)
        text = f"Report {i}: the council voted on budget line {i * 7}. The vote passed by {i % 9 + 1} votes."
        if i % 2:
            (sub / f"report-{i:03d}.md").write_text(f"---\ntitle: Report {i}\n---\n{text}\n", encoding="utf-8")
        else:
            (sub / f"report-{i:03d}.txt").write_text(text + "\n", encoding="utf-8")
    return folder


def upload(tmp_path: Path, name: str, data: bytes) -> str:
    """A file as Gradio hands it over: in a folder of its own."""
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / name
    path.write_bytes(data)
    return str(path)


def contents(index: Path) -> dict:
    """What an index holds, independent of chunk ids and of the order it was built in."""
    store = Store.open(index)
    try:
        chunks = store.chunks(store.chunk_ids())
        return {
            "articles": store.article_hashes(),
            "chunks": sorted((c.article_id, c.start, c.end, c.text, c.title) for c in chunks.values()),
            "sources": store.manifest["sources"],
            "settings": (store.manifest["chunk_tokens"], store.manifest["overlap_sentences"]),
        }
    finally:
        store.close()


def fields(report) -> tuple:
    return (report.added, report.changed, report.removed, report.unchanged, report.chunks_embedded, report.skipped)


@pytest.fixture
def collection(tmp_path) -> Path:
    return write_collection(tmp_path / "articles")


def test_an_addition_reads_only_the_files_it_saved(collection, tmp_path, monkeypatch):
    lib = Library.build([collection], index_dir=tmp_path / "index", embedder=FakeEmbedder(), settings=LEXICAL)
    read, real = [], articles._read_file
    monkeypatch.setattr(articles, "_read_file", lambda path, article_id: (read.append(path), real(path, article_id))[1])
    added = add(lib, collection / "uploads", [upload(tmp_path, "oil.txt", OIL)])
    saved = collection / "uploads" / "oil.txt"
    assert [p for p in read if not p.name.startswith(".upload-")] == [saved]  # the other is the check before saving
    assert (added.report.added, added.report.unchanged) == (1, 50)
    save_upload(collection, "rain.txt", b"Rain closed the harbour.\n")
    read.clear()
    assert lib.add([collection / "rain.txt"]).added == 1
    assert read == [collection / "rain.txt"]


def test_the_index_after_an_addition_is_the_index_a_full_build_gives(collection, tmp_path):
    chunked = LEXICAL.with_(chunk_tokens=16, overlap_sentences=1)
    Library.build([collection], index_dir=tmp_path / "index", embedder=FakeEmbedder(), settings=chunked)
    Library.build([collection], index_dir=tmp_path / "before", embedder=FakeEmbedder(), settings=chunked)
    app = Library.open(tmp_path / "index", embedder=FakeEmbedder(), settings=LEXICAL)  # default chunking
    files = [upload(tmp_path, "oil.txt", OIL), upload(tmp_path, "notes.jsonl", NOTES)]
    added = add(app, collection / "uploads" / "2024", files, "Rail strike", "Train drivers in France stopped work.")
    assert added.error == "" and added.refused == []
    full = Library.build([collection], index_dir=tmp_path / "full", embedder=FakeEmbedder(), settings=chunked)
    assert contents(tmp_path / "index") == contents(tmp_path / "full")
    assert full.last_build.added == 54
    # The report is the one re-reading the whole collection gives, as additions did before.
    before = Library.open(tmp_path / "before", embedder=FakeEmbedder(), settings=LEXICAL)
    expected = before.update(before.update_paths(collection / "uploads" / "2024"))
    assert fields(added.report) == fields(expected) == (4, 0, 0, 50, 4, [])
    assert contents(tmp_path / "index") == contents(tmp_path / "before")
    again = app.update()
    assert (again.added, again.changed, again.removed, again.chunks_embedded) == (0, 0, 0, 0)


def test_a_copy_of_an_indexed_article_is_skipped_with_the_message_a_full_read_gives(collection, tmp_path):
    Library.build([collection], index_dir=tmp_path / "index", embedder=FakeEmbedder(), settings=LEXICAL)
    shutil.copytree(tmp_path / "index", tmp_path / "before")
    lib = Library.open(tmp_path / "index", embedder=FakeEmbedder(), settings=LEXICAL)
    copy = (collection / "section-1" / "report-001.md").read_bytes()
    files = [upload(tmp_path, "again.md", copy), upload(tmp_path, "oil.txt", OIL), upload(tmp_path, "oil-2.txt", OIL)]
    added = add(lib, collection / "uploads", files)
    assert sorted((Path(s.path).name, s.reason) for s in added.skipped) == [
        ("again.md", "same text as articles/section-1/report-001.md, indexed once"),
        ("oil.txt", "same text as articles/uploads/oil-2.txt, indexed once"),  # "oil-2.txt" is read first
    ]
    assert "again.md</code>: same text as articles/section-1/report-001.md" in added_html(added)
    before = Library.open(tmp_path / "before", embedder=FakeEmbedder(), settings=LEXICAL)
    expected = before.update(before.update_paths(collection / "uploads"))
    assert fields(added.report)[:-1] == fields(expected)[:-1] == (1, 0, 0, 50, 1)
    assert sorted(added.report.skipped, key=str) == sorted(expected.skipped, key=str)
    assert "articles/uploads/again.md" not in lib.store.article_hashes()


def test_a_copy_saved_before_the_original_in_reading_order_is_skipped_too(collection, tmp_path):
    """Where a full read would meet the new copy first and drop the indexed original, an addition keeps the original."""
    lib = Library.build([collection], index_dir=tmp_path / "index", embedder=FakeEmbedder(), settings=LEXICAL)
    copy = (collection / "report-000.txt").read_bytes()
    added = add(lib, collection, [upload(tmp_path, "aaa.txt", copy)])
    assert [s.reason for s in added.skipped] == ["same text as articles/report-000.txt, indexed once"]
    assert (added.report.added, added.report.removed, added.report.unchanged) == (0, 0, 50)


@pytest.mark.parametrize("where", ["uploads/2024/spring", "section-3/new", "."])
def test_an_upload_into_a_new_sub_folder_gets_the_id_a_full_read_gives(collection, tmp_path, where):
    lib = Library.build([collection], index_dir=tmp_path / "index", embedder=FakeEmbedder(), settings=LEXICAL)
    added = add(lib, collection / where, [upload(tmp_path, "oil.txt", OIL)])
    [oil] = [a.id for a in articles.read([collection]) if a.title == "oil"]
    assert oil == f"articles/{where}/oil.txt".replace("/./", "/")
    assert added.report.added == 1 and lib.search("oil barrel", k=1)[0].article_id == oil
    assert lib.sources == [str(collection.resolve())]


def test_a_folder_outside_the_collection_joins_it_and_files_outside_every_folder_are_refused(collection, tmp_path):
    lib = Library.build([collection], index_dir=tmp_path / "index", embedder=FakeEmbedder(), settings=LEXICAL)
    added = add(lib, tmp_path / "inbox", [upload(tmp_path, "oil.txt", OIL)])
    assert lib.search("oil barrel", k=1)[0].article_id == "inbox/oil.txt" and added.report.unchanged == 50
    assert lib.sources == [str(collection.resolve()), str((tmp_path / "inbox").resolve())]
    assert lib.update().unchanged == 51
    stray = Path(upload(tmp_path, "stray.txt", b"A stray article.\n"))
    with pytest.raises(UploadError, match="stray.txt is not in a folder that .* is built from"):
        lib.add([stray])


def test_an_addition_that_needs_a_full_rebuild_reads_the_whole_collection(collection, tmp_path):
    index = tmp_path / "index"
    Library.build([collection], index_dir=index, embedder=FakeEmbedder(), settings=LEXICAL)
    new = save_upload(collection / "uploads", "oil.txt", OIL)
    partial = indexer.collect([collection], index, only=[new])
    assert (len(partial.articles), partial.partial) == (1, True)
    report = indexer.build(partial, Settings(index_dir=index, chunk_tokens=16), FakeEmbedder())
    assert report.full_reason.startswith("chunk_tokens changed from ") and report.full_reason.endswith(" to 16")
    assert (report.added, report.unchanged, report.removed) == (1, 50, 0)
    assert contents(index)["articles"].keys() == {a.id for a in articles.read([collection])}


def test_an_addition_with_the_real_model_equals_a_full_build(tiny_corpus, tmp_path, real_embedder):
    lib = Library.build([tiny_corpus], index_dir=tmp_path / "index", embedder=real_embedder)
    added = add(lib, tiny_corpus / "uploads", [upload(tmp_path, "lufthansa.txt", b"Lufthansa pilots walked out.\n")])
    assert (added.report.added, added.report.unchanged) == (1, 3)
    Library.build([tiny_corpus], index_dir=tmp_path / "full", embedder=real_embedder)
    assert contents(tmp_path / "index") == contents(tmp_path / "full")
    assert lib.search("Who walked out?", k=1)[0].article_id == "articles/uploads/lufthansa.txt"
