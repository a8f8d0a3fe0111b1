"""The index at scale, at small sizes: approximate dense search forced on, updates that write what
changed, segments merged by size, tombstones, readers of the old generation, format 1, the settings."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from test_library import WIKINEWS_QUESTIONS

from qa import IndexMismatchError, Library, Settings
from qa import store as store_module
from qa.store import MERGE_FACTOR, Store, Terms

from conftest import SEEDS, WIKINEWS, FakeEmbedder

SEED_QUESTIONS = [
    "Who traveled to Mexico City?",
    "What will replace the Merida Initiative?",
    "How many people were killed in Mexico in 2020?",
]
# Few lists, few probed, few re-scored: the approximate path really is approximate here. With and without
# re-scoring from float16 copies (the default: scores from the 8-bit codes).
IVF = "ivf:nlist=4,nprobe=1,rescore=20"
IVF_CODES = "ivf:nlist=4,nprobe=1"
LEXICAL = Settings(mode="lexical", answer_candidates=0)


@pytest.fixture(scope="module")
def exact_and_approximate(tmp_path_factory, real_embedder):
    root = tmp_path_factory.mktemp("ann")
    return [
        Library.build(
            [SEEDS, WIKINEWS], index_dir=root / kind, embedder=real_embedder, settings=Settings(dense_index=kind)
        )
        for kind in ("flat", IVF, IVF_CODES)
    ]


@pytest.mark.parametrize("question", SEED_QUESTIONS + [q for q, _, _ in WIKINEWS_QUESTIONS])
@pytest.mark.parametrize("kind", [IVF, IVF_CODES])
def test_the_approximate_index_finds_the_exact_best_passage(exact_and_approximate, question, kind):
    exact, approximate = exact_and_approximate[0], exact_and_approximate[1 + (kind == IVF_CODES)]
    assert exact.info().dense == "flat (1 segment)"
    assert approximate.info().dense.startswith(kind.split(",rescore")[0])
    assert approximate.manifest["dense_index"] == kind
    assert {p.suffix for p in approximate.store.path.glob("seg-*")} == (
        {".faiss", ".ids", ".f16"} if "rescore" in kind else {".faiss", ".ids"}
    )
    for mode in ("hybrid", "dense"):
        ours = approximate.search(question, k=1) if mode == "hybrid" else dense_top(approximate, question)
        theirs = exact.search(question, k=1) if mode == "hybrid" else dense_top(exact, question)
        assert (ours[0].chunk_id, ours[0].text) == (theirs[0].chunk_id, theirs[0].text), mode
        assert ours[0].similarity == pytest.approx(theirs[0].similarity, abs=4e-3)  # float16, or 8-bit codes


def dense_top(lib: Library, question: str):
    store, embedder = lib.store, lib.embedder
    vector = embedder.encode([question], progress=False)[0]
    [(chunk_id, score)] = store.dense(vector, 1)
    row = store.chunks([chunk_id])[chunk_id]

    class Hit:  # what the comparison reads
        pass

    hit = Hit()
    hit.chunk_id, hit.text, hit.similarity = chunk_id, row.text, score
    return [hit]


@pytest.mark.parametrize("kind", [IVF, IVF_CODES])
def test_exact_search_on_an_approximate_index_scans_every_vector(exact_and_approximate, real_embedder, kind):
    exact, approximate = exact_and_approximate[0], exact_and_approximate[1 + (kind == IVF_CODES)]
    vector = real_embedder.encode(["Which phone's pre-orders overwhelmed Apple and AT&T?"], progress=False)[0]
    scanned = approximate.store.dense(vector, 10, exact=True)  # the float16 copy, or every list's codes
    flat = exact.store.dense(vector, 10)
    assert [i for i, _ in scanned[:5]] == [i for i, _ in flat[:5]]
    assert [s for _, s in scanned] == pytest.approx([s for _, s in flat], abs=4e-3)


def test_the_dense_index_setting_is_checked():
    for bad in ("hnsw", "ivf:nlist=x", "ivf:depth=3", "flat:nprobe=2"):
        with pytest.raises(ValueError, match="dense index kind|Bad parameter"):
            Settings(dense_index=bad)
    with pytest.raises(ValueError, match="dense_search must be index or exact"):
        Settings(dense_search="fast")
    assert Settings(dense_index="ivf:nprobe=64").dense_index == "ivf:nprobe=64"


def segment_files(index) -> dict[str, tuple[int, int]]:
    data = index / (index / "CURRENT").read_text().split("/")[0]
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(data.glob("seg-*"))}


def records(lib: Library) -> dict[int, dict]:
    with sqlite3.connect(lib.store.path / "meta.sqlite") as db:
        return {i: json.loads(r) for i, r in db.execute("SELECT id, record FROM segments")}


def big_collection(tmp_path):
    folder = tmp_path / "articles"
    folder.mkdir()
    shutil.copy(WIKINEWS, folder / "wikinews.jsonl")
    (folder / "oil.txt").write_text("Oil rose above 100 dollars a barrel on Monday.\n")
    return folder


def test_an_update_writes_a_segment_of_what_changed_and_leaves_the_rest_alone(tmp_path):
    folder, index = big_collection(tmp_path), tmp_path / "index"
    lib = Library.build([folder], index_dir=index, embedder=FakeEmbedder(), settings=LEXICAL)
    before = segment_files(index)
    assert list(before) == ["seg-000001.faiss", "seg-000001.ids"]
    (folder / "oil.txt").write_text("Oil fell below 50 dollars a barrel on Tuesday.\n")
    lib = Library.build([folder], index_dir=index, embedder=FakeEmbedder(), settings=LEXICAL)
    assert lib.last_build.changed == 1 and lib.last_build.chunks_embedded == 1
    after = segment_files(index)
    assert {n: after[n] for n in before} == before, "the segment of the unchanged articles was rewritten"
    assert sorted(set(after) - set(before)) == ["seg-000002.faiss", "seg-000002.ids"]
    assert records(lib)[2]["count"] == 1
    assert lib.search("When did oil fall below 50 dollars?", k=1)[0].text.startswith("Oil fell")
    assert all("Oil rose" not in p.text for p in lib.search("oil barrel dollars", k=5))
    assert lib.store.check() == []


def test_small_segments_are_merged_by_size_tier(tmp_path):
    folder, index = big_collection(tmp_path), tmp_path / "index"
    Library.build([folder], index_dir=index, embedder=FakeEmbedder(), settings=LEXICAL)
    for n in range(2 * MERGE_FACTOR):
        (folder / f"extra{n}.txt").write_text(f"Extra story number {n}: rain closed the schools of Leeds.\n")
        lib = Library.build([folder], index_dir=index, embedder=FakeEmbedder(), settings=LEXICAL)
        live = lib.manifest["segments"]
        assert len(live) <= MERGE_FACTOR, live  # the big one and at most MERGE_FACTOR - 1 small ones
        assert lib.store.check() == []
    assert lib.info().articles == 55 + 1 + 2 * MERGE_FACTOR
    hits = lib.search("Extra story number 3 rain Leeds", k=2 * MERGE_FACTOR)
    assert {p.article_id for p in hits} == {f"articles/extra{n}.txt" for n in range(2 * MERGE_FACTOR)}
    # Segments merged away are deleted once no generation that a reader may hold names them.
    data = lib.store.path
    names = {f"seg-{i:06d}" for i, _ in lib.manifest["segments"]}
    with sqlite3.connect(data / "meta.sqlite") as db:
        kept = {f"seg-{i:06d}" for (i,) in db.execute("SELECT id FROM segments")}
    assert {p.stem for p in data.glob("seg-*")} == kept and names <= kept


def test_readers_of_the_old_generation_see_it_whole_while_the_new_one_is_live(tmp_path):
    folder, index = big_collection(tmp_path), tmp_path / "index"
    Library.build([folder], index_dir=index, embedder=FakeEmbedder(), settings=LEXICAL)
    old = Store.open(index)
    (folder / "oil.txt").unlink()
    (folder / "gold.txt").write_text("Gold rose to a record on Friday.\n")
    lib = Library.build([folder], index_dir=index, embedder=FakeEmbedder(), settings=LEXICAL)
    new = lib.store
    oil = FakeEmbedder().encode(["Oil rose above 100 dollars a barrel on Monday."])[0]
    gold = FakeEmbedder().encode(["Gold rose to a record on Friday."])[0]

    def texts(store, vector, query):
        dense = store.chunks(i for i, _ in store.dense(vector, 3))
        lexical = store.chunks(i for i, _ in store.lexical(query, 3))
        return [r.text for r in dense.values()] + [r.text for r in lexical.values()]

    assert any(t.startswith("Oil rose") for t in texts(old, oil, "oil barrel"))
    assert not any(t.startswith("Gold rose") for t in texts(old, gold, "gold record"))
    assert not any(t.startswith("Oil rose") for t in texts(new, oil, "oil barrel"))
    assert any(t.startswith("Gold rose") for t in texts(new, gold, "gold record"))
    assert "articles/oil.txt" not in new.article_hashes() and "articles/oil.txt" in old.article_hashes()
    assert old.manifest["chunks"] == new.manifest["chunks"]
    old.close()


def test_changing_the_dense_index_setting_rewrites_segments_without_embedding(tmp_path):
    folder, index = big_collection(tmp_path), tmp_path / "index"
    Library.build([folder], index_dir=index, embedder=FakeEmbedder(), settings=LEXICAL)
    lib = Library.build(
        [folder], index_dir=index, embedder=FakeEmbedder(), settings=LEXICAL.with_(dense_index="ivf:nlist=2")
    )
    assert lib.last_build.chunks_embedded == 0
    assert lib.info().dense.startswith("ivf:nlist=2") and lib.store.check() == []
    assert lib.search("Which phone's pre-orders overwhelmed Apple and AT&T?", k=1)[0].article_id.endswith("meantime-6")
    # An update that does not name the setting keeps the index's own.
    (folder / "oil.txt").write_text("Oil fell below 50 dollars a barrel on Tuesday.\n")
    assert lib.update().changed == 1 and lib.manifest["dense_index"] == "ivf:nlist=2"


def test_progress_reports_passages_and_an_estimated_total(tmp_path):
    folder = big_collection(tmp_path)
    calls = []
    Library.build(
        [folder], index_dir=tmp_path / "index", embedder=FakeEmbedder(), progress=lambda d, t: calls.append((d, t))
    )
    assert calls and calls[-1][0] == calls[-1][1] == 153
    assert all(d <= t for d, t in calls) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_a_format_1_index_says_which_command_upgrades_it_and_a_build_does(tmp_path, tiny_corpus):
    index = tmp_path / "index"
    old = index / "gen-000003"
    old.mkdir(parents=True)
    (old / "manifest.json").write_text(json.dumps({"format": 1, "model": "m", "dim": 3, "chunks": 0}))
    (index / "CURRENT").write_text("gen-000003\n")
    with pytest.raises(IndexMismatchError, match=r"format 1 .* Upgrade it with `qa build --full --index "):
        Library.open(index, embedder=FakeEmbedder())
    lib = Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder())
    assert "format 1" in lib.last_build.full_reason
    assert not old.exists() and lib.info().articles == 3


def test_a_big_index_asks_the_full_text_for_the_questions_rarest_words():
    terms = Terms()
    assert terms.spell(["running", "apples"]) == {"running": ["run"], "apples": ["appl"]}
    df = {"run": 10, "appl": 5000, "pear": 3, "bake": 400}.get
    counts = lambda found: {t: df(t) for t in found if df(t)}  # noqa: E731 - as Store._df answers
    # "apples" is in half the chunks: left out; "zzzz" is in none: it could match nothing.
    assert terms.match("Who was running with apples and pears, zzzz?", counts, 10_000) == '"running" OR "pears"'
    assert terms.match("apples zzzz", counts, 10_000) == '"apples"'  # only common words: the rarest stays
    many = "baking running pears apples"
    assert terms.match(many, counts, 10_000) == '"baking" OR "running" OR "pears"'


def test_the_rare_words_query_finds_what_the_full_query_finds(tmp_path, monkeypatch):
    folder, index = big_collection(tmp_path), tmp_path / "index"
    lib = Library.build([folder], index_dir=index, embedder=FakeEmbedder(), settings=LEXICAL)
    full = {q: [p.article_id for p in lib.search(q, k=1)] for q, _, _ in WIKINEWS_QUESTIONS}
    monkeypatch.setattr(store_module, "RARE_TERMS_FROM", 0)  # the rare-words path, at this size;
    monkeypatch.setattr(store_module, "COMMON_SHARE", 1.0)  # but no word is common in 150 chunks,
    monkeypatch.setattr(store_module, "RARE_TERMS", 64)  # and every word is kept: the same query, spelled anew
    fresh = Library.open(index, embedder=FakeEmbedder(), settings=LEXICAL)
    assert {q: [p.article_id for p in fresh.search(q, k=1)] for q in full} == full
    # The counts follow removals and changes.
    with sqlite3.connect(fresh.store.path / "meta.sqlite") as db:
        before = dict(db.execute("SELECT term, df FROM terms"))
    (folder / "oil.txt").unlink()
    lib = Library.build([folder], index_dir=index, embedder=FakeEmbedder(), settings=LEXICAL)
    (folder / "gold.txt").write_text("Gold rose.\n")
    lib = Library.build([folder], index_dir=index, embedder=FakeEmbedder(), settings=LEXICAL)  # collects oil.txt
    with sqlite3.connect(lib.store.path / "meta.sqlite") as db:
        after = dict(db.execute("SELECT term, df FROM terms"))
    assert after.get("oil", 0) == before["oil"] - 1 and after["gold"] == before.get("gold", 0) + 1
