"""Incremental builds: only new and changed articles are embedded, removed ones vanish everywhere."""

from __future__ import annotations

import json
import sqlite3

import pytest

from qa import Library, NoArticlesError, Settings, articles, indexer
from qa.cli import main as cli_main
from qa.store import Store, current_generation

from conftest import WIKINEWS, FakeEmbedder


class CountingEmbedder(FakeEmbedder):
    """FakeEmbedder that remembers how many texts it embedded."""

    def __init__(self) -> None:
        self.embedded = 0

    def encode(self, texts, progress=None):
        self.embedded += len(texts)
        return super().encode(texts, progress)


class OtherModel(FakeEmbedder):
    name = "fake-other"


# The fake model's retrieval, without fusion or answer-stage re-ordering that others tune: what these
# tests assert is which articles the index holds, so they search in the most literal way.
FAKE = Settings(mode="lexical", answer_candidates=0)


def build(folder, index, embedder=None, **kw) -> Library:
    kw.setdefault("settings", FAKE)
    return Library.build([folder], index_dir=index, embedder=embedder or FakeEmbedder(), **kw)


def counts(lib: Library) -> tuple[int, int, int, int]:
    r = lib.last_build
    return r.added, r.changed, r.removed, r.unchanged


def stored(index) -> dict[str, set]:
    """Everything the live generation holds about articles: metadata, chunks, full text, vectors."""
    store = Store.open(index)
    try:
        assert store.check() == []  # counts of rows and vectors agree, files match their checksums
        ids = store.chunk_ids()
        rows = store.chunks(ids)
        with sqlite3.connect(store.path / "meta.sqlite") as db:
            fts = {r[0] for r in db.execute("SELECT rowid FROM chunks_fts")}
            every_chunk = {r[0] for r in db.execute("SELECT id FROM chunks")}
        assert fts == every_chunk, "full text of chunks that are gone, or chunks without full text"
        assert len(ids) == store.manifest["chunks"]
        hashes = store.article_hashes()
        return {
            "articles": set(hashes),
            "chunks": {r.article_id for r in rows.values()},
            "fts": {rows[i].article_id for i in ids if i in fts},
            "hashes": set(hashes),
        }
    finally:
        store.close()


def test_first_build_adds_everything_and_says_why(tiny_corpus, tmp_path):
    lib = build(tiny_corpus, tmp_path / "index")
    assert counts(lib) == (3, 0, 0, 0)
    assert lib.last_build.full_reason == "there was no index yet"


def test_rebuild_with_nothing_changed_embeds_nothing_and_writes_nothing(tiny_corpus, tmp_path):
    build(tiny_corpus, tmp_path / "index")
    gen = current_generation(tmp_path / "index")
    embedder = CountingEmbedder()
    lib = build(tiny_corpus, tmp_path / "index", embedder)
    assert counts(lib) == (0, 0, 0, 3)
    assert embedder.embedded == 0 and lib.last_build.chunks_embedded == 0
    assert lib.last_build.full_reason == ""
    assert current_generation(tmp_path / "index") == gen


def test_add_change_remove_are_counted_and_only_those_are_embedded(tiny_corpus, tmp_path):
    build(tiny_corpus, tmp_path / "index")
    (tiny_corpus / "boeing.txt").unlink()
    (tiny_corpus / "gm.md").write_text("# GM cuts jobs\nGeneral Motors will cut 9,000 jobs in Ohio.\n")
    (tiny_corpus / "ford.txt").write_text("Ford sold Jaguar and Land Rover to Tata Motors for 2.3 billion dollars.\n")
    embedder = CountingEmbedder()
    lib = build(tiny_corpus, tmp_path / "index", embedder)
    assert counts(lib) == (1, 1, 1, 1)
    assert embedder.embedded == lib.last_build.chunks_embedded == 2
    assert "1 added, 1 changed, 1 removed, 1 unchanged, 0 skipped" in lib.last_build.summary()
    assert lib.search("Who bought Jaguar?", k=1)[0].article_id == "articles/ford.txt"
    assert "9,000 jobs in Ohio" in lib.search("How many GM jobs are cut?", k=1)[0].text


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_removed_article_is_gone_from_search_and_metadata(tiny_corpus, tmp_path, mode):
    index, question = tmp_path / "index", "Boeing 787 Dreamliner delivery delayed"
    lib = build(tiny_corpus, index, settings=FAKE.with_(mode=mode))
    assert lib.search(question, k=1)[0].article_id == "articles/boeing.txt"
    (tiny_corpus / "boeing.txt").unlink()
    lib = build(tiny_corpus, index, settings=FAKE.with_(mode=mode))
    assert lib.last_build.removed == 1
    hits = lib.search(question, k=10)
    assert all(p.article_id != "articles/boeing.txt" for p in hits)
    assert all("Dreamliner" not in p.text for p in hits)
    for where, ids in stored(index).items():
        assert "articles/boeing.txt" not in ids, where
        assert ids == {"articles/apple.md", "articles/gm.md"}, where


def test_changed_article_leaves_no_stale_chunks(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    build(tiny_corpus, index)
    (tiny_corpus / "boeing.txt").write_text("Airbus delivered the first A380 to Singapore Airlines.\n")
    lib = build(tiny_corpus, index)
    assert counts(lib) == (0, 1, 0, 2)
    lexical = Library.open(index, embedder=FakeEmbedder(), settings=FAKE)
    assert lexical.search("Dreamliner", k=5) == []
    assert lexical.search("A380", k=5)[0].article_id == "articles/boeing.txt"
    assert lib.info().chunks == 3


def test_model_change_forces_full_rebuild_and_says_so(tiny_corpus, tmp_path):
    build(tiny_corpus, tmp_path / "index")
    embedder = OtherModel()
    lib = build(tiny_corpus, tmp_path / "index", embedder)
    assert lib.last_build.full_reason == "model changed from 'fake-bow' to 'fake-other'"
    assert lib.last_build.chunks_embedded == 3
    assert counts(lib) == (0, 0, 0, 3)  # the articles themselves did not change
    assert Library.open(tmp_path / "index", embedder=OtherModel()).info().model == "fake-other"


@pytest.mark.parametrize(("setting", "value"), [("chunk_tokens", 16), ("overlap_sentences", 0)])
def test_chunk_setting_change_forces_full_rebuild(tiny_corpus, tmp_path, setting, value):
    build(tiny_corpus, tmp_path / "index")
    (tiny_corpus / "gm.md").unlink()
    lib = build(tiny_corpus, tmp_path / "index", settings=Settings(**{setting: value}))
    assert lib.last_build.full_reason.startswith(f"{setting} changed from ")
    assert counts(lib) == (0, 0, 1, 2)
    assert lib.last_build.chunks_embedded == lib.last_build.chunks_total


def test_full_flag_reembeds_everything(tiny_corpus, tmp_path):
    build(tiny_corpus, tmp_path / "index")
    embedder = CountingEmbedder()
    lib = build(tiny_corpus, tmp_path / "index", embedder, full=True)
    assert lib.last_build.full_reason == "--full was asked for"
    assert embedder.embedded == lib.last_build.chunks_total == 3
    assert counts(lib) == (0, 0, 0, 3)


def test_one_changed_record_in_a_jsonl_file_is_the_only_one_embedded(tmp_path):
    folder = tmp_path / "news"
    folder.mkdir()
    records = [
        {"id": f"n{i}", "title": f"Story {i}", "text": f"Story number {i} is about topic {i}."} for i in range(20)
    ]
    write_jsonl(folder / "all.jsonl", records)
    build(folder, tmp_path / "index")
    records[7]["text"] = "Story seven now reports that the mayor resigned."
    del records[3]
    records.append({"id": "n99", "title": "Late", "text": "A late story about the harbour."})
    write_jsonl(folder / "all.jsonl", records)
    embedder = CountingEmbedder()
    lib = build(folder, tmp_path / "index", embedder)
    assert counts(lib) == (1, 1, 1, 18)
    assert embedder.embedded == 2
    assert lib.search("Who resigned?", k=1)[0].article_id == "news/all.jsonl#n7"


def test_old_generations_are_collected(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    for n in range(4):
        (tiny_corpus / f"extra{n}.txt").write_text(f"Extra story {n} about rain in Leeds.\n")
        build(tiny_corpus, index)
    assert sorted(p.name for p in index.iterdir() if p.is_dir()) == ["data-000001"]
    assert current_generation(index) == "data-000001/gen-000004"
    with sqlite3.connect(index / "data-000001" / "meta.sqlite") as db:
        assert [g for (g,) in db.execute("SELECT gen FROM generations")] == [3, 4]


def test_cli_build_reports_counts_and_full_reason_with_real_model(
    tiny_corpus, tmp_path, capsys, monkeypatch, real_embedder
):
    index = str(tmp_path / "index")
    assert cli_main(["build", str(tiny_corpus), "--index", index]) == 0
    assert "3 added, 0 changed, 0 removed, 0 unchanged" in capsys.readouterr().out
    (tiny_corpus / "boeing.txt").unlink()
    (tiny_corpus / "ford.txt").write_text("Ford sold Jaguar and Land Rover to Tata Motors.\n")
    assert cli_main(["build", str(tiny_corpus), "--index", index]) == 0
    out = capsys.readouterr()
    assert "1 added, 0 changed, 1 removed, 2 unchanged" in out.out
    assert "Full build" not in out.err
    monkeypatch.setenv("QA_CHUNK_TOKENS", "64")
    assert cli_main(["build", str(tiny_corpus), "--index", index]) == 0
    assert f"Full build: chunk_tokens changed from {Settings().chunk_tokens} to 64." in capsys.readouterr().err
    assert cli_main(["build", str(tiny_corpus), "--index", index, "--full"]) == 0
    assert "Full build: --full was asked for." in capsys.readouterr().err
    lib = Library.open(index, embedder=real_embedder)
    assert lib.search("Who bought Jaguar?", k=1)[0].article_id == "articles/ford.txt"
    assert all(p.article_id != "articles/boeing.txt" for p in lib.search("When is the Dreamliner delivered?", k=5))


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_wikinews_records_hash_separately(tmp_path):
    lines = WIKINEWS.read_text().splitlines()[:30]
    folder = tmp_path / "wikinews"
    folder.mkdir()
    (folder / "articles.jsonl").write_text("\n".join(lines) + "\n")
    build(folder, tmp_path / "index")
    rec = json.loads(lines[5])
    rec["text"] += " This sentence was added later."
    lines[5] = json.dumps(rec)
    (folder / "articles.jsonl").write_text("\n".join(lines) + "\n")
    lib = build(folder, tmp_path / "index")
    assert counts(lib) == (0, 1, 0, 29)


def test_nothing_changed_never_loads_the_model(tiny_corpus, tmp_path, monkeypatch, real_embedder):
    import qa.embedding

    index = tmp_path / "index"
    Library.build([tiny_corpus], index_dir=index, embedder=real_embedder)
    loads = []
    monkeypatch.setattr(qa.embedding, "load_embedder", lambda model: loads.append(model) or real_embedder)
    lib = Library.build([tiny_corpus], index_dir=index, model="all-MiniLM-L6-v2")  # an alias of the default
    assert lib.last_build.unchanged == 3 and loads == []
    (tiny_corpus / "gm.md").write_text("# GM\nGeneral Motors hired 300 workers in Ohio.\n")
    lib = Library.build([tiny_corpus], index_dir=index)
    assert lib.last_build.changed == 1 and lib.last_build.full_reason == ""
    assert set(loads) == {"sentence-transformers/all-MiniLM-L6-v2"}  # loaded (cached) once there was work


def test_deleting_every_article_empties_the_index_instead_of_citing_them(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    build(tiny_corpus, index)
    for f in tiny_corpus.iterdir():
        f.unlink()
    lib = build(tiny_corpus, index)
    assert counts(lib) == (0, 0, 3, 0)
    assert all(ids == set() for ids in stored(index).values())
    assert lib.search("Boeing Dreamliner delivery", k=5) == []
    hybrid = Library.open(index, embedder=FakeEmbedder())  # the default pipeline copes with nothing too
    assert hybrid.search("Who queued in Paris?", k=5) == []
    (tmp_path / "elsewhere").mkdir()  # an empty folder this index was never built from is still a mistake
    with pytest.raises(NoArticlesError, match="No readable articles in"):
        build(tmp_path / "elsewhere", index)
    assert Library.open(index, embedder=FakeEmbedder()).info().articles == 0


def test_a_build_keeps_no_text_of_the_collection_and_reads_again_only_the_files_it_embeds(
    tiny_corpus, tmp_path, monkeypatch
):
    index = tmp_path / "index"
    build(tiny_corpus, index)
    (tiny_corpus / "feed.jsonl").write_text(
        '{"id": "a", "text": "Tides rose along the coast."}\n{"id": "b", "text": "The ferry was cancelled."}\n'
    )
    collection = indexer.collect([tiny_corpus], index)
    assert collection.articles == [] and len(collection.entries()) == 5  # ids and hashes, not texts
    reads = []
    read_file = articles._read_file
    monkeypatch.setattr(articles, "_read_file", lambda path, id: reads.append(path.name) or read_file(path, id))
    report = indexer.build(collection, FAKE.with_(index_dir=index), FakeEmbedder())
    assert reads == ["feed.jsonl"] and (report.added, report.unchanged) == (2, 3)
    assert build(tiny_corpus, index).search("ferry cancelled", k=1)[0].article_id == "articles/feed.jsonl#b"


def test_an_article_changed_or_deleted_between_listing_and_embedding_is_taken_as_it_is_then(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    collection = indexer.collect([tiny_corpus], index)
    (tiny_corpus / "gm.md").write_text("# GM reopens\nGeneral Motors reopened the Flint harbour plant.\n")
    gone = next(p for p in sorted(tiny_corpus.iterdir()) if p.name != "gm.md")
    gone.unlink()
    report = indexer.build(collection, FAKE.with_(index_dir=index), FakeEmbedder())
    assert [s.path for s in report.skipped] == [str(gone)]
    assert "while the build ran" in report.skipped[0].reason
    lib = Library.open(index, embedder=FakeEmbedder(), settings=FAKE)
    assert lib.search("Flint harbour", k=1)[0].title == "GM reopens"
    again = lib.update()  # the changed article was indexed as it is now, the deleted one is not there
    assert (again.added, again.changed, again.removed, again.unchanged) == (0, 0, 0, 2)
