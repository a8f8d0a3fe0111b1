"""Library.update: re-indexing the collection into a served index, as the "Add articles" panel and `qa build`'s
hand-off do: the recorded folders, the index's own chunking, waiting for another build."""

from __future__ import annotations

import threading
import time

import pytest

from qa import Library, Settings
from qa.errors import NoSourcesError
from qa.store import lock
from qa.web.adding import save_text, save_upload

from conftest import FakeEmbedder, edit_manifest

ARTICLE = b"Lufthansa pilots walked out on Monday, grounding 800 flights across Germany.\n"


def test_upload_is_searchable_at_once_and_survives_a_restart(tiny_corpus, tmp_path, real_embedder):
    index = tmp_path / "index"
    lib = Library.build([tiny_corpus], index_dir=index, embedder=real_embedder)
    assert lib.sources == [str(tiny_corpus.resolve())]
    save_upload(tiny_corpus / "uploads", "lufthansa.txt", ARTICLE)
    save_text(tiny_corpus / "uploads", "Rail strike", "Train drivers in France stopped work for two days.")
    report = lib.update(lib.update_paths(tiny_corpus / "uploads"))
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
    assert lib.update(lib.update_paths(tmp_path / "inbox")).added == 1
    assert lib.update().unchanged == 4  # the next update keeps the new folder
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
    assert lib.update(wait=10).added == 1
    assert time.monotonic() - began >= 0.3
    t.join()


def test_update_needs_to_know_the_collection_and_a_plain_build_records_it(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder())
    dropped = []  # as an index built before sources were recorded
    edit_manifest(index, lambda manifest: dropped.append(manifest.pop("sources")))
    assert dropped == [[str(tiny_corpus.resolve())]]
    lib = Library.open(index, embedder=FakeEmbedder())
    with pytest.raises(NoSourcesError, match="does not record which folders it was built from"):
        lib.update()
    save_upload(tmp_path / "inbox", "oil.txt", b"Oil rose above 100 dollars a barrel.\n")
    with pytest.raises(NoSourcesError, match="does not record"):  # never a rebuild from the new folder alone
        lib.update(lib.update_paths(tmp_path / "inbox"))
    assert Library.open(index, embedder=FakeEmbedder()).info().articles == 3
    rebuilt = Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder())
    assert rebuilt.last_build.chunks_embedded == 0 and lib.sources == [str(tiny_corpus.resolve())]
    assert lib.update().unchanged == 3


def test_update_keeps_the_index_chunking_whatever_the_app_was_started_with(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=Settings(chunk_tokens=16))
    app = Library.open(index, embedder=FakeEmbedder())  # default chunk_tokens=128
    save_upload(tiny_corpus, "oil.txt", b"Oil rose above 100 dollars a barrel.\n")
    report = app.update()
    assert (report.added, report.unchanged, report.full_reason, report.chunks_embedded) == (1, 3, "", 1)
    assert app.manifest["chunk_tokens"] == 16
