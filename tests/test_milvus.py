"""The Milvus backend, through Milvus Lite (the real engine, in process): build, search, incremental
changes, full rebuilds under a searching reader, killed builds, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from qa import FilterError, Library, NoIndexError, NoSuchArticleError, Settings, backends
from qa.cli import main as cli_main
from qa.milvus import MilvusError, release

from conftest import FakeEmbedder
from tests.test_crash import answers, change_collection, kill, start_build
from tests.test_incremental import CountingEmbedder

# Literal searches with the fake model, as in test_crash; the Milvus side is set by each test.
FAKE = Settings(mode="lexical", answer_candidates=0, backend="milvus")


@pytest.fixture(autouse=True)
def _released():
    """Each test's Milvus Lite files are let go after it, as a process that ends lets go of them."""
    yield
    release()


def milvus(index: Path, **kw) -> Settings:
    return FAKE.with_(index_dir=index, **kw)


def build(folder, index, embedder=None, **kw) -> Library:
    settings = kw.pop("settings", milvus(index))
    return Library.build([folder], settings=settings, embedder=embedder or FakeEmbedder(), **kw)


def test_a_milvus_index_is_built_searched_and_described(tiny_corpus, tmp_path):
    lib = build(tiny_corpus, tmp_path / "index")
    assert (tmp_path / "index" / "milvus.db").exists()  # Milvus Lite's file, in the index directory by default
    assert lib.last_build.added == 3 and lib.last_build.chunks_total == 3
    assert answers(lib)["When is the Dreamliner delivered?"] == "articles/boeing.txt"
    info = lib.info()
    assert (info.articles, info.chunks, info.dense) == (3, 3, "milvus AUTOINDEX")
    assert info.generation == "qa_data_000001/gen-000001"
    assert lib.store.article_text("articles/boeing.txt") == (tiny_corpus / "boeing.txt").read_text().strip()
    assert lib.check() == []
    for mode in ("dense", "hybrid"):
        hits = Library(lib.store, lib.embedder, lib.settings.with_(mode=mode)).search("Dreamliner delivery", k=3)
        assert hits[0].article_id == "articles/boeing.txt" and len(hits) == 3


def test_an_update_embeds_only_what_changed_and_removed_articles_leave_both_searches(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    build(tiny_corpus, index)
    change_collection(tiny_corpus)  # boeing removed, apple changed, ford added
    embedder = CountingEmbedder()
    lib = build(tiny_corpus, index, embedder)
    report = lib.last_build
    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 1, 1, 1)
    assert embedder.embedded == 2 and report.chunks_total == 3 and lib.info().articles == 3
    assert answers(lib)["Who bought Jaguar?"] == "articles/ford.txt"
    store = lib.store
    for hits in (store.lexical("Dreamliner Boeing", 10), store.dense(embedder.encode(["Boeing Dreamliner"])[0], 10)):
        assert {store.chunks([i])[i].article_id for i, _ in hits} <= {
            "articles/apple.md",
            "articles/gm.md",
            "articles/ford.txt",
        }
    assert store.article_hashes().keys() == {"articles/apple.md", "articles/gm.md", "articles/ford.txt"}
    assert lib.check() == []
    embedder.embedded = 0
    again = build(tiny_corpus, index, embedder)
    assert again.last_build.unchanged == 3 and embedder.embedded == 0


def test_a_milvus_index_equals_a_local_one_of_the_same_articles(tiny_corpus, tmp_path):
    local = Library.build(
        [tiny_corpus], index_dir=tmp_path / "local", embedder=FakeEmbedder(), settings=FAKE.with_(backend="local")
    )
    remote = build(tiny_corpus, tmp_path / "index")
    one, two = local.store, remote.store
    chunks = lambda s: sorted((c.article_id, c.start, c.end, c.text, c.title) for c in s.chunks(s.chunk_ids()).values())  # noqa: E731
    assert chunks(one) == chunks(two)
    assert one.article_hashes() == two.article_hashes()
    for question in ("Who queued in Paris?", "jobs in Michigan", "Dreamliner delivery"):
        assert one.dense(FakeEmbedder().encode([question])[0], 3) == two.dense(FakeEmbedder().encode([question])[0], 3)
        assert [p.article_id for p in local.search(question, k=3)] == [
            p.article_id for p in remote.search(question, k=3)
        ]
    ids = two.chunk_ids()
    spans = {i: two.sentences([i])[i][0] for i in ids}
    assert all(spans.values())  # the answer stage's sentence vectors are kept


def test_a_full_rebuild_swaps_in_a_new_collection_while_a_reader_searches(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    lib = build(tiny_corpus, index)
    seen, stop = [], threading.Event()

    def search() -> None:
        while not stop.is_set():
            seen.append(tuple(p.article_id for p in lib.search("Apple Paris store Boeing jobs", k=3)))

    reader = threading.Thread(target=search)
    reader.start()
    try:
        report = lib.update(full=True)
    finally:
        stop.set()
        reader.join()
    assert report.full_reason == "--full was asked for" and report.chunks_embedded == 3
    assert seen and len(set(seen)) == 1 and len(seen[0]) == 3, "a search saw a half-built index"
    assert lib.info().generation == "qa_data_000002/gen-000002"
    client = backends.of(milvus(index)).client
    assert sorted(c for c in client.list_collections() if c.startswith("qa_data_")) == [
        "qa_data_000001",  # the previous one stays for readers that still use it, until the next build
        "qa_data_000002",
    ]
    lib.update(full=True)
    assert sorted(c for c in client.list_collections() if c.startswith("qa_data_")) == [
        "qa_data_000002",
        "qa_data_000003",
    ]


def test_a_library_picks_up_a_build_made_by_another(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    serving = build(tiny_corpus, index)
    assert answers(serving)["Who bought Jaguar?"] != "articles/ford.txt"
    change_collection(tiny_corpus)
    build(tiny_corpus, index)  # another Library, as a build handed to the app would be
    assert answers(serving)["Who bought Jaguar?"] == "articles/ford.txt"


@pytest.mark.parametrize("stage", ["embedding", "batch", "writing", "swapped"])
def test_a_killed_milvus_build_leaves_the_index_serving_and_the_next_build_completes(
    tiny_corpus, tmp_path, monkeypatch, stage
):
    index = tmp_path / "index"
    old = answers(build(tiny_corpus, index))
    release()  # Milvus Lite serves one process: the build below runs in another
    change_collection(tiny_corpus)
    monkeypatch.setenv("QA_BACKEND", "milvus")
    monkeypatch.setenv("QA_MODE", "lexical")
    kill(start_build(tiny_corpus, index, stage))
    lib = Library.open(settings=milvus(index), embedder=FakeEmbedder())
    if stage == "swapped":
        assert answers(lib)["Who bought Jaguar?"] == "articles/ford.txt"
    else:
        assert answers(lib) == old
    assert lib.check() == []
    after = build(tiny_corpus, index)
    if stage in ("batch", "writing"):
        assert after.last_build.resumed == 2 and after.last_build.chunks_embedded == 0
    assert after.last_build.chunks_total == 3 and after.check() == []
    assert answers(after)["Who bought Jaguar?"] == "articles/ford.txt"
    assert all(p.article_id != "articles/boeing.txt" for p in after.search("Dreamliner", k=5))


def test_the_cli_builds_searches_and_describes_a_milvus_index_as_it_does_a_local_one(tiny_corpus, tmp_path, capsys):
    """With the real model: the same passages and answering sentences from either backend."""
    milvus = ["--backend", "milvus", "--milvus-uri", str(tmp_path / "elsewhere" / "qa.db")]
    found = {}
    for name, flags in (("local", []), ("milvus", milvus)):
        flags = ["--index", str(tmp_path / name), *flags]
        assert cli_main(["build", str(tiny_corpus), *flags, "--no-app"]) == 0
        assert "3 added" in capsys.readouterr().out
        assert cli_main(["search", "When is the first Dreamliner delivered?", "--json", *flags]) == 0
        found[name] = [(h["article_id"], h["highlight"]) for h in json.loads(capsys.readouterr().out)["passages"]]
        assert cli_main(["info", "--json", *flags]) == 0
        assert json.loads(capsys.readouterr().out)["chunks"] == 3
        assert cli_main(["check", *flags]) == 0
        assert "no problems found" in capsys.readouterr().out
    assert found["milvus"] == found["local"] and found["milvus"][0][0] == "articles/boeing.txt"
    assert not (tmp_path / "milvus" / "milvus.db").exists() and (tmp_path / "elsewhere" / "qa.db").exists()


def test_milvus_errors_are_one_line_that_says_what_to_do(tiny_corpus, tmp_path, capsys):
    flags = ["--index", str(tmp_path / "index"), "--backend", "milvus"]
    assert cli_main(["info", *flags]) == 1
    assert "error: No index in Milvus collection qa at " in capsys.readouterr().err
    with pytest.raises(NoIndexError, match="Run `qa build seeds/ --backend milvus --milvus-uri "):
        Library.open(settings=milvus(tmp_path / "index"), embedder=FakeEmbedder())
    # A server that isn't there: one line, no traceback.
    assert cli_main(["info", "--backend", "milvus", "--milvus-uri", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Milvus at http://127.0.0.1:9 can't be reached") and "Traceback" not in err
    # A Milvus Lite file that another process holds.
    build(tiny_corpus, tmp_path / "index")
    release()
    hold = f"from pymilvus import MilvusClient; MilvusClient({str(tmp_path / 'index' / 'milvus.db')!r}); print('open')"
    holder = subprocess.Popen(
        [sys.executable, "-u", "-c", hold + "; input()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(MilvusError, match="is open in another process"):
            Library.open(settings=milvus(tmp_path / "index"), embedder=FakeEmbedder())
    finally:
        holder.kill()
        holder.wait()


def test_a_milvus_index_built_with_another_model_is_refused_with_how_to_rebuild(tiny_corpus, tmp_path, real_embedder):
    build(tiny_corpus, tmp_path / "index")
    with pytest.raises(Exception, match="was built with model 'fake-bow'"):
        Library.open(settings=milvus(tmp_path / "index"), embedder=real_embedder)


def test_a_passage_longer_than_milvus_holds_is_cut_not_the_build_failed(tiny_corpus, tmp_path):
    (tiny_corpus / "long.txt").write_text("A very long word follows. " + "é" * 40_000 + "\n")  # 80,000 bytes
    lib = build(tiny_corpus, tmp_path / "index")
    assert lib.last_build.added == 4 and not lib.last_build.skipped
    chunks = lib.store.chunks(lib.store.chunk_ids())
    longest = max(chunks.values(), key=lambda c: c.end - c.start)
    assert longest.article_id == "articles/long.txt" and longest.end - longest.start >= 40_000  # offsets whole
    assert 60_000 < len(longest.text.encode()) <= 65_535  # the stored text cut to what a VARCHAR holds
    assert answers(lib)["When is the Dreamliner delivered?"] == "articles/boeing.txt"


def test_filters_apply_inside_milvus_searches(tiny_corpus, tmp_path):
    """Filters become Milvus filter expressions: both retrievers search only what they let through."""
    lib = build(tiny_corpus, tmp_path / "index")
    assert lib.article_sources() == ["Wire"]
    for mode in ("lexical", "dense", "hybrid"):
        searching = Library(lib.store, lib.embedder, lib.settings.with_(mode=mode))
        assert {p.article_id for p in searching.search("jobs store Dreamliner", k=3, source="wire")} == {
            "articles/apple.md"
        }
        assert {p.article_id for p in searching.search("jobs store Dreamliner", k=3, after="2008")} == {
            "articles/apple.md"
        }
        assert {p.article_id for p in searching.search("jobs store Dreamliner", k=3, article="gm CUTS")} == {
            "articles/gm.md"
        }
        assert searching.search("jobs store Dreamliner", k=3, before="2007") == []
    with pytest.raises(FilterError, match="No article has source 'BBC'. The sources are: Wire."):
        lib.search("store", source="BBC")
    with pytest.raises(NoSuchArticleError):
        lib.search("store", article="zebra")


def test_a_starved_filtered_milvus_search_scores_the_filters_rows_exactly(tmp_path, monkeypatch):
    """An approximate index may find fewer rows than asked for under a narrow filter (Milvus Lite's HNSW: 7
    of 100 in a month of 100,000 chunks): then each row the filter lets through is scored exactly, when they
    are at most EXACT_MOST; article filters' answers are remembered (a query over every title)."""
    from qa import filters
    from qa import milvus as milvus_mod

    folder = tmp_path / "articles"
    folder.mkdir()
    for n in range(30):
        source = "Rare" if n % 6 == 0 else "Common"
        (folder / f"a{n}.md").write_text(f"---\ntitle: Report {n}\nsource: {source}\n---\nThe harbour log {n}.\n")
    index = build(folder, tmp_path / "index").store
    rare = filters.validate(filters.check(source="Rare"), index)
    ids = [int(r["id"]) for r in index._query(index._condition(rare), ["id"])]
    vector = FakeEmbedder().encode(["harbour log"], progress=False)[0]
    scores = index.vectors(ids) @ vector
    exact = sorted(zip(ids, scores.tolist()), key=lambda hit: -hit[1])[:3]
    searched = milvus_mod.MilvusIndex._search
    monkeypatch.setattr(
        milvus_mod.MilvusIndex, "_search", lambda self, *a: searched(self, *a)[:1] if a[1] == "vec" else pytest.fail()
    )
    assert len(ids) == 5
    assert [(i, round(s, 5)) for i, s in index.dense(vector, 3, where=rare)] == [(i, round(s, 5)) for i, s in exact]
    assert len(index.dense(vector, 3)) == 1  # unfiltered: what the index found
    monkeypatch.setattr(milvus_mod, "EXACT_MOST", 4)  # too many to score one by one: what the index found
    assert len(index.dense(vector, 3, where=rare)) == 1
    assert index.has_article("report 6") and not index.has_article("report 99")
    monkeypatch.setattr(milvus_mod.MilvusIndex, "_query", lambda *a, **kw: pytest.fail("asked again"))
    assert index.has_article("report 6") and not index.has_article("report 99")


def test_milvus_full_text_search_reads_words_as_the_local_index_does(tiny_corpus, tmp_path):
    """Milvus Lite has no English stemmer: qa spells each chunk's terms itself, as FTS5 does (Porter,
    diacritics folded), so both backends' full-text searches match the same chunks."""
    (tiny_corpus / "cafe.txt").write_text("The runners were running past the Café Müller at dawn.\n")
    local = Library.build(
        [tiny_corpus], index_dir=tmp_path / "local", embedder=FakeEmbedder(), settings=FAKE.with_(backend="local")
    )
    remote = build(tiny_corpus, tmp_path / "index")
    for question in ("Who runs?", "a cafe by Muller", "muller", "Where did the runner go?"):
        for lib in (local, remote):
            assert [p.article_id for p in lib.search(question, k=1)] == ["articles/cafe.txt"], question
    for question in ("jobs cut in Michigan", "delivered Dreamliners", "stores queued", "the café"):
        found = [
            {lib.store.chunks([i])[i].article_id for i, _ in lib.store.lexical(question, 10)} for lib in (local, remote)
        ]
        assert found[0] == found[1], question


def test_a_milvus_collection_made_before_qa_spelled_terms_is_still_searched_and_updated(
    tiny_corpus, tmp_path, monkeypatch
):
    """A collection whose BM25 function reads the text itself (qa before the terms field) needs no rebuild:
    its searches give Milvus the question's words, and an update writes rows of its own shape."""
    from pymilvus import Function, FunctionType

    from qa.milvus import Milvus

    def old_create(self, collection: str, dim: int) -> None:
        c = self.client
        schema = c.create_schema(auto_id=False)
        schema.add_field("id", _type("INT64"), is_primary=True)
        schema.add_field("article", _type("VARCHAR"), max_length=4096)
        for name in ("title", "source", "date", "url", "title_key", "sentences", "pages"):
            schema.add_field(name, _type("VARCHAR"), max_length=65_535)
        for name in ("day", "hash", "text_key"):
            schema.add_field(name, _type("VARCHAR"), max_length=64)
        for name in ("start", "end", "added", "removed"):
            schema.add_field(name, _type("INT64"))
        analyzer = {"tokenizer": "standard", "filter": ["lowercase"]}
        schema.add_field("text", _type("VARCHAR"), max_length=65_535, enable_analyzer=True, analyzer_params=analyzer)
        schema.add_field("vec", _type("FLOAT_VECTOR"), dim=dim)
        schema.add_field("sparse", _type("SPARSE_FLOAT_VECTOR"))
        schema.add_function(
            Function(
                name="bm25", function_type=FunctionType.BM25, input_field_names=["text"], output_field_names=["sparse"]
            )
        )
        index = c.prepare_index_params()
        index.add_index("vec", index_type="AUTOINDEX", metric_type="IP")
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        c.create_collection(collection, schema=schema, index_params=index, consistency_level="Strong")

    with monkeypatch.context() as m:
        m.setattr(Milvus, "create", old_create)
        build(tiny_corpus, tmp_path / "index")
    change_collection(tiny_corpus)  # boeing removed, apple changed, ford added
    lib = build(tiny_corpus, tmp_path / "index")
    assert "terms" not in lib.store.backend.fields(lib.store.collection)
    assert answers(lib)["Who bought Jaguar?"] == "articles/ford.txt"
    assert lib.store.lexical("Dreamliner", 10) == []


def _type(name: str):
    from pymilvus import DataType

    return getattr(DataType, name)


@pytest.mark.parametrize("backend", ["local", "milvus"])
def test_the_sources_follow_each_update_and_milvus_keeps_them_in_its_manifest(tiny_corpus, tmp_path, backend):
    """The sources (a filter's choices, read at every app start) come without reading every row."""
    settings = milvus(tmp_path / "index", backend=backend)
    (tiny_corpus / "bbc.md").write_text("---\nsource: BBC\n---\nThe BBC reported on the Paris store.\n")
    assert build(tiny_corpus, None, settings=settings).article_sources() == ["BBC", "Wire"]
    change_collection(tiny_corpus)  # apple.md, the one article from Wire, loses its source
    lib = build(tiny_corpus, None, settings=settings)
    assert lib.article_sources() == ["BBC"]
    (tiny_corpus / "bbc.md").unlink()
    lib = build(tiny_corpus, None, settings=settings)
    assert lib.article_sources() == []
    if backend == "milvus":
        assert lib.store.manifest["article_sources"] == []


def test_an_article_filter_matches_an_underscore_as_itself(tiny_corpus, tmp_path):
    """Milvus's LIKE reads "_" as any character: a title word with one is matched whole, as locally."""
    (tiny_corpus / "snake.md").write_text("# snake_case rules\nPython names use snake_case.\n")
    (tiny_corpus / "other.md").write_text("# snakeycase rules\nOther names use snakeycase.\n")
    lib = build(tiny_corpus, tmp_path / "index")
    assert [p.article_id for p in lib.search("names", k=3, article="SNAKE_CASE")] == ["articles/snake.md"]
    (tiny_corpus / "snake.md").unlink()
    with pytest.raises(NoSuchArticleError):
        build(tiny_corpus, tmp_path / "index").search("names", article="snake_case")


@pytest.fixture
def refusing_server():
    """A gRPC server that answers every Milvus call as a Milvus server answers a wrong token (its auth
    interceptor's status and words): no Milvus server runs here, and Milvus Lite takes any token."""
    from concurrent import futures

    import grpc
    from pymilvus.grpc_gen import milvus_pb2_grpc

    def refuse(self, request, context):
        context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "auth check failure, please check username, password or API key are correct",
        )

    servicer = type("Refusing", (milvus_pb2_grpc.MilvusServiceServicer,), {})
    for name in dir(milvus_pb2_grpc.MilvusServiceServicer):
        if not name.startswith("_"):
            setattr(servicer, name, refuse)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop(None)


def test_a_wrong_token_is_one_line_that_says_to_set_the_token(refusing_server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("QA_MILVUS_TOKEN", "root:wrong")
    assert cli_main(["info", "--backend", "milvus", "--milvus-uri", refusing_server]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: Milvus at {refusing_server} refused the token (unauthenticated: auth check failure")
    assert "Set QA_MILVUS_TOKEN to a valid user:password or API key." in err and "Traceback" not in err
    settings = milvus(tmp_path / "index", milvus_uri=refusing_server, milvus_token="root:wrong")
    with pytest.raises(MilvusError, match="refused the token"):
        Library.open(settings=settings, embedder=FakeEmbedder())


def test_a_build_on_another_machine_holds_the_collection_until_its_claim_runs_out(tiny_corpus, tmp_path):
    """Builds on two machines share one Milvus but not an index directory: a claim row in Milvus keeps
    the second out, with who holds it; a claim that ran out, or of a process of this machine that is
    gone, is taken over."""
    import socket
    import time

    from qa import IndexLockedError

    index = tmp_path / "index"
    lib = build(tiny_corpus, index)
    backend = backends.of(milvus(index))
    until = time.time() + 600
    backend.put(
        "claim-elsewhere", {"host": "build-2.example", "pid": 4242, "since": "2026-11-30 10:00:00", "until": until}
    )
    with pytest.raises(
        IndexLockedError, match=r"is being built by process 4242 on build-2\.example \(since 2026-11-30"
    ):
        lib.update()
    assert set(backend._claims()) == {"claim-elsewhere"}  # its own claim taken back
    backend.put("claim-elsewhere", {"host": "build-2.example", "pid": 4242, "until": time.time() - 1})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    backend.put("claim-here", {"host": socket.gethostname(), "pid": int(dead.stdout), "until": until})
    change_collection(tiny_corpus)
    assert lib.update().added == 1
    assert backend._claims() == {}  # the stale claims, and the build's own, are gone
