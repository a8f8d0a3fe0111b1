"""Filters (source, date range, article) on every interface: Python, the CLI, the JSON route, the UI.

They apply inside retrieval, so a filtered search still returns ``k`` passages when ``k`` exist. The real
model and index: the seed and 55 Wikinews articles (three sources, dates from 2004 to 2021, some undated).
"""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from qa import FilterError, Library, Settings, filters
from qa.errors import NoSuchArticleError
from qa.filters import Filter

from conftest import FakeEmbedder
from tests import test_browser
from tests.test_app import post
from tests.test_browser import ask
from tests.test_cli import run

GUM = "GUM (amir-zeldes/gum)"
MEANTIME = "MEANTIME (newsreader/eso-and-ceo)"
QUESTION = "Who founded Apple?"
# test_browser's Chromium and page, for this module's app.
browser, page = test_browser.browser, test_browser.page


@pytest.mark.parametrize(
    "args, expected",
    [
        ({}, Filter()),
        ({"source": ""}, Filter()),
        ({"source": [" A  wire ", "B", "A wire"]}, Filter(sources=("A wire", "B"))),
        ({"after": "2008"}, Filter(after="2008-01-01")),
        ({"before": "2008"}, Filter(before="2008-12-31")),
        ({"before": "2024-02"}, Filter(before="2024-02-29")),
        ({"after": " 2008-03-06 ", "before": "2008-03-06"}, Filter(after="2008-03-06", before="2008-03-06")),
        ({"after": "2009", "before": "2008"}, Filter(after="2009-01-01", before="2008-12-31")),  # holds nothing
        ({"article": "  Apple   iPhone "}, Filter(article="Apple iPhone")),
    ],
)
def test_check_reads_what_every_interface_sends(args, expected):
    assert filters.check(**args) == expected


@pytest.mark.parametrize(
    "args, message",
    [
        ({"after": "yesterday"}, '"after" must be a date as YYYY-MM-DD'),
        ({"before": "2008-13-01"}, '"before" must be a date'),
        ({"after": "2008-02-30"}, '"after" must be a date'),
        ({"after": 2008}, '"after" must be a date'),
        ({"after": "2008-3-6"}, '"after" must be a date'),
        ({"source": 5}, '"source" must be'),
        ({"source": ["A", 5]}, '"source" must be'),
        ({"article": ["x"]}, '"article" must be text'),
    ],
)
def test_malformed_filters_are_refused_saying_what_is_expected(args, message):
    with pytest.raises(FilterError, match=message):
        filters.check(**args)


@pytest.mark.parametrize(
    "text, day",
    [
        ("2021-10-08", "2021-10-08"),
        ("2021/10/8", "2021-10-08"),
        ("2021-10-08T17:45:00+02:00", "2021-10-08"),
        ("March 06, 2008", "2008-03-06"),
        ("6 March 2008", "2008-03-06"),
        ("Sep 1, 2009", "2009-09-01"),
        ("Thu, 01 Oct 2009 10:00:00 GMT", "2009-10-01"),
        ("2021-02-30", None),
        ("", None),
        ("last spring", None),
    ],
)
def test_article_dates_are_read_as_days(text, day):
    assert filters.day(text) == day


def _sources(passages):
    return {p.source for p in passages}


def test_a_source_filter_still_finds_k_passages(wikinews_library):
    unfiltered = wikinews_library.search(QUESTION, k=5)
    assert GUM not in _sources(unfiltered)  # the filter has to reach past the best passages
    passages = wikinews_library.search(QUESTION, k=5, source=GUM.upper())
    assert len(passages) == 5 and _sources(passages) == {GUM}
    both = wikinews_library.search(QUESTION, k=8, source=[GUM, "OAN Newsroom"])
    assert len(both) == 8 and _sources(both) == {GUM, "OAN Newsroom"}


def test_the_article_filter_matches_whole_words_in_any_script(tmp_path):
    folder = tmp_path / "articles"
    folder.mkdir()
    for name, title in [("a", "Élysée Palace talks"), ("b", "Software award for Москва"), ("c", "War ends")]:
        (folder / f"{name}.md").write_text(f"---\ntitle: {title}\n---\nThe talks of {name} went on all night.\n")
    lib = Library.build([folder], index_dir=tmp_path / "index", embedder=FakeEmbedder())
    assert {p.title for p in lib.search("talks", article="élysée")} == {"Élysée Palace talks"}
    assert {p.title for p in lib.search("talks", article="МОСКВА")} == {"Software award for Москва"}
    assert {p.title for p in lib.search("talks", article="war")} == {"War ends"}  # not "Software award"


def test_a_date_range_keeps_dated_articles_inside_it(wikinews_library):
    passages = wikinews_library.search(QUESTION, k=6, after="2009-01-01", before="2009-12-31")
    assert len(passages) == 6
    assert all("2009-01-01" <= filters.day(p.date) <= "2009-12-31" for p in passages)
    assert {p.source for p in wikinews_library.search("security framework", k=3, after="2021")} == {"OAN Newsroom"}
    assert wikinews_library.search(QUESTION, k=5, before="1990") == []  # a range nothing is in: no passage
    assert wikinews_library.search(QUESTION, k=5, after="2010", before="2009") == []


def test_an_article_filter_takes_an_id_or_title_words(wikinews_library):
    by_title = wikinews_library.search(QUESTION, k=3, article="steve jobs resigns")
    assert {p.title for p in by_title} == {"Apple executive Steve Jobs resigns"}
    by_id = wikinews_library.search(QUESTION, k=3, article=by_title[0].article_id)
    assert {p.article_id for p in by_id} == {by_title[0].article_id}


def test_unknown_sources_and_articles_say_what_there_is(wikinews_library):
    with pytest.raises(
        FilterError, match=re.escape(f"No article has source 'BBC'. The sources are: {GUM}, {MEANTIME},")
    ):
        wikinews_library.search(QUESTION, source="BBC")
    with pytest.raises(FilterError, match="No article has the id 'zebra crossing'"):
        wikinews_library.search(QUESTION, article="zebra crossing")
    assert wikinews_library.article_sources() == [GUM, MEANTIME, "OAN Newsroom", "WikinewsSum (airKlizz/WikinewsSum)"]


def test_the_chat_searches_only_what_the_filter_lets_through(wikinews_library):
    from qa.chat import ask as chat_ask

    answer = chat_ask(wikinews_library, QUESTION, k=4, where=filters.check(source=GUM))
    assert len(answer.passages) == 4 and _sources(answer.passages) == {GUM}


def test_a_source_filter_takes_each_spelling_of_the_source(tmp_path):
    """Sources match in any case, non-ASCII letters too (SQLite's NOCASE folds ASCII only)."""
    folder = tmp_path / "articles"
    folder.mkdir()
    for n, source in enumerate(["Élysée Wire", "ÉLYSÉE WIRE", "Other"]):
        (folder / f"a{n}.md").write_text(f"---\ntitle: T{n}\nsource: {source}\n---\nThe harbour opened on day {n}.\n")
    lib = Library.build([folder], index_dir=tmp_path / "index", embedder=FakeEmbedder())
    assert {p.source for p in lib.search("harbour", k=3, source="élysée wire")} == {"Élysée Wire", "ÉLYSÉE WIRE"}


def _rounded(ranking):
    """A ranking with its scores rounded: FAISS and numpy sum a dot product in different orders."""
    return [(i, round(s, 5)) for i, s in ranking]


@pytest.mark.parametrize("times", [1, 2, 4, 10])
def test_post_filtering_finds_what_searching_the_filters_chunks_finds(wikinews_library, monkeypatch, times):
    """A filtered search first keeps what an unfiltered one's ``times * k`` candidates let through: the same
    hits, scores and order as searching the filter's own chunks, whether enough pass (or the ranking held
    every match) or too few do (then it searches the filter's chunks, and its next searches go straight there)."""
    from qa import store as store_mod

    store, embedder = wikinews_library.store, wikinews_library.embedder
    chunks, k = store.manifest["chunks"], 40
    kinds = {"dense": set(), "lexical": set()}
    monkeypatch.setattr(store_mod.Store, "_lets_too_few_through", lambda *_: False)  # each tried (that one: below)
    for where in [
        filters.check(source=GUM),
        filters.check(source=[GUM, MEANTIME, "OAN Newsroom", "WikinewsSum (airKlizz/WikinewsSum)"]),
        filters.check(after="2009", before="2012"),
        filters.check(source=GUM, article="steve jobs resigns"),  # never post-filtered: a few articles at most
    ]:
        where = filters.validate(where, store)
        for question in [QUESTION, "What did people say this year?", "police"]:  # 90 and 2 full-text matches
            vector = embedder.encode([question], progress=False)[0]
            for side, search in [
                ("dense", lambda n, w=filters.NONE, v=vector: store.dense(v, n, where=w)),
                ("lexical", lambda n, w=filters.NONE, q=question: store.lexical(q, n, w)),
            ]:
                monkeypatch.setattr(store_mod, "POST_FILTER_TIMES", 0)  # always the filter's chunks
                store._short.clear()
                searched = _rounded(search(k, where))
                monkeypatch.setattr(store_mod, "POST_FILTER_TIMES", times)
                store._short.clear()
                short = store._post_filtered(search, k, where, side == "lexical") is None
                if where.article:
                    assert short and where not in store._short
                    continue
                kinds[side].add("short" if short else "every chunk" if times * k >= chunks else "post-filtered")
                assert (where in store._short) == short
                store._short.clear()
                assert _rounded(search(k, where)) == searched
                if short:  # remembered: asked again, it goes straight to the filter's chunks
                    assert where in store._short
                    assert store._post_filtered(lambda n: pytest.fail("searched unfiltered"), k, where) is None
    monkeypatch.setattr(store_mod, "POST_FILTER_MOST", min(times * k, chunks) - 1)  # a k too large for it
    where = filters.validate(filters.check(source=GUM), store)
    store._short.clear()
    assert store._post_filtered(lambda n: pytest.fail("searched unfiltered"), k, where) is None
    assert where not in store._short
    if times * k >= chunks:
        assert kinds == {"dense": {"every chunk"}, "lexical": {"every chunk"}}
    else:  # each way taken
        assert kinds["dense"] == {"short", "post-filtered"} and "post-filtered" in kinds["lexical"]
        assert "short" in kinds["lexical"] or times * k > 90


def test_a_filter_that_lets_too_few_chunks_through_is_not_post_filtered(wikinews_library, monkeypatch):
    """A filter that lets fewer than one chunk in ``POST_FILTER_TIMES`` through goes straight to its chunks,
    gathered when that was asked (counted through the articles' indexes first); one that lets enough through is
    post-filtered; each filter is asked once."""
    from qa import store as store_mod

    store = wikinews_library.store
    articles, chunks = store.manifest["articles"], store.manifest["chunks"]
    for where in [
        filters.check(source=GUM),
        filters.check(source=MEANTIME),
        filters.check(after="2010", before="2010"),
        filters.check(source=MEANTIME, after="2004", before="2010"),
    ]:
        where = filters.validate(where, store)
        ids = store._allowed(where)
        passing = len({row.article_id for row in store.chunks(ids.tolist()).values()})
        for times in range(1, 40):
            store._allowed_kept.clear()
            short = store._lets_too_few_through(where, times)
            assert short == (passing * times < articles and len(ids) * times < chunks)
            assert (where in store._allowed_kept) == short  # all its chunks, kept for the search
            assert not short or list(store._allowed(where)) == list(ids)
    dated = filters.validate(filters.check(after="2010", before="2010"), store)
    times = -(-chunks // len(store._allowed(dated))) - 1  # the most times at which too few of its chunks pass
    monkeypatch.setattr(store_mod, "POST_FILTER_TIMES", times)
    store._short.clear()
    assert store._post_filtered(lambda n: pytest.fail("searched unfiltered"), 5, dated) is None
    assert dated in store._short
    meantime = filters.validate(filters.check(source=MEANTIME), store)
    store._wide.clear()
    asked = []
    vector = store.vectors([1])[0]
    assert len(store._post_filtered(lambda n: asked.append(n) or store.dense(vector, n), 5, meantime)) == 5
    assert asked == [times * 5] and meantime in store._wide and meantime not in store._short
    monkeypatch.setattr(store_mod.Store, "_lets_too_few_through", lambda *_: pytest.fail("asked again"))
    assert len(store._post_filtered(lambda n: store.dense(vector, n), 5, meantime)) == 5
    assert all("2010" in p.date for p in wikinews_library.search(QUESTION, k=2, where=dated))


def test_a_source_of_few_long_articles_is_post_filtered_and_only_live_articles_count(tmp_path):
    """Articles hold chunks unevenly: a source with one article in 21 that holds most of the chunks lets
    enough through, and is not gathered. Articles removed by a later build are not counted."""
    folder = tmp_path / "articles"
    folder.mkdir()
    sentences = " ".join(f"Chapter line {n} tells of the harbour and its boats." for n in range(400))
    (folder / "book.md").write_text(f"---\ntitle: Book\nsource: books\n---\n{sentences}\n")
    for n in range(20):
        (folder / f"news{n}.md").write_text(
            f"---\ntitle: News {n}\nsource: news\n---\nThe harbour reopened on day {n}.\n"
        )
    lib = Library.build([folder], index_dir=tmp_path / "index", embedder=FakeEmbedder())
    store = lib.store
    books = filters.validate(filters.check(source="books"), store)
    assert 1 * 4 < store.manifest["articles"] and len(store._allowed(books)) * 4 >= store.manifest["chunks"]
    store._allowed_kept.clear()
    assert not store._lets_too_few_through(books, 4) and books not in store._allowed_kept
    news = filters.validate(filters.check(source="news"), store)
    assert not store._lets_too_few_through(news, 2)  # 20 articles of 21
    for n in range(18):
        (folder / f"news{n}.md").unlink()
    lib.update()
    assert lib.store.manifest["articles"] == 3
    assert lib.store._lets_too_few_through(news, 1)  # 2 of 3 live articles (the 18 removed rows not counted)
    lib.close()


@pytest.mark.parametrize("exact_up_to", [0, 10**9])
def test_an_approximate_segment_filters_inside_its_lists(tmp_path, monkeypatch, exact_up_to):
    """IVF segments: the filter's chunks scored one by one (few), or searched for in the lists probed,
    then all scored when those hold fewer than k of them: k passages either way, all let through."""
    from qa import dense

    monkeypatch.setattr(dense, "FILTER_EXACT_UP_TO", exact_up_to)
    folder = tmp_path / "articles"
    folder.mkdir()
    for n in range(60):
        source = "Rare" if n % 20 == 0 else "Common"
        (folder / f"a{n:02d}.md").write_text(
            f"---\ntitle: Report {n}\nsource: {source}\ndate: 2020-01-{n % 28 + 1:02d}\n---\n"
            f"Report {n} tells of harbour number {n} and its {n * 7} boats.\n",
            encoding="utf-8",
        )
    settings = Settings(index_dir=tmp_path / "index", dense_index="ivf:nlist=8,nprobe=1,rescore=0", mode="dense")
    lib = Library.build([folder], settings=settings.with_(answer_candidates=0), embedder=FakeEmbedder())
    assert "ivf" in lib.info().dense
    exact = Library(lib.store, lib.embedder, lib.settings.with_(dense_search="exact"))
    rare = lib.search("harbour boats", k=3, source="Rare")  # 3 chunks: the lists probed hold fewer, or all
    assert {p.title for p in rare} == {"Report 0", "Report 20", "Report 40"}
    window = filters.check(after="2020-01-03", before="2020-01-05")  # 8 articles
    found = lib.search("harbour boats", k=3, where=window)
    assert len(found) == 3 and all("2020-01-03" <= p.date <= "2020-01-05" for p in found)
    if exact_up_to:  # scored one by one: the exact top 3
        assert [p.chunk_id for p in found] == [p.chunk_id for p in exact.search("harbour boats", k=3, where=window)]


def test_an_index_built_before_date_filters_filters_by_date_and_title_and_gains_the_columns(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder()).close()
    (data,) = index.glob("data-*")
    with sqlite3.connect(data / "meta.sqlite") as db:  # as qa before filters wrote it
        for name in ("articles_day", "articles_title", "articles_source_day"):
            db.execute(f"DROP INDEX {name}")
        db.execute("ALTER TABLE articles DROP COLUMN day")
        db.execute("ALTER TABLE articles DROP COLUMN title_key")
    old = Library.open(index, embedder=FakeEmbedder())
    assert not old.store._counted  # a filter's share is not counted without the indexes: each is tried
    assert [p.title for p in old.search("store", k=3, after="2008-01-01")] == ["Apple opens a store in Paris"]
    assert [p.title for p in old.search("store", k=3, article="PARIS apple")] == ["Apple opens a store in Paris"]
    (tiny_corpus / "new.md").write_text("---\ntitle: New\ndate: 2010-05-05\n---\nA new store opened.\n")
    old.update()
    with sqlite3.connect(data / "meta.sqlite") as db:
        days = {title: (day, key) for title, day, key in db.execute("SELECT title, day, title_key FROM articles")}
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert days["Apple opens a store in Paris"] == ("2008-01-02", " apple opens a store in paris ")
    assert days["New"] == ("2010-05-05", " new ")
    assert {"articles_day", "articles_title", "articles_source_day"} <= indexes and old.store._counted
    assert [p.title for p in old.search("store", k=3, after="2010")] == ["New"]
    # the same filter as before the update: not the chunk ids its generation let through
    assert {p.title for p in old.search("store", k=3, after="2008-01-01")} == {"Apple opens a store in Paris", "New"}
    assert [p.title for p in old.search("store", k=3, article="PARIS apple")] == ["Apple opens a store in Paris"]
    with pytest.raises(NoSuchArticleError):  # whole words only
        old.search("store", k=3, article="apple par")


def test_an_index_with_the_older_source_index_filters_and_gains_the_one_with_days(tiny_corpus, tmp_path):
    """qa before 2026-12 indexed sources without their days: such an index filters as it is, uncounted
    (every filter is tried by post-filtering), and its next build replaces that index."""
    index = tmp_path / "index"
    Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder()).close()
    (data,) = index.glob("data-*")
    with sqlite3.connect(data / "meta.sqlite") as db:
        db.execute("DROP INDEX articles_source_day")
        db.execute("CREATE INDEX articles_source ON articles(source, added, removed)")
    old = Library.open(index, embedder=FakeEmbedder())
    source = old.store.sources()[0]
    assert not old.store._counted
    found = old.search("store", k=2, source=source, after="2000")
    assert found and all(p.source == source for p in found)
    (tiny_corpus / "new.md").write_text("---\ntitle: New\ndate: 2010-05-05\n---\nA new store opened.\n")
    old.update()
    with sqlite3.connect(data / "meta.sqlite") as db:
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "articles_source_day" in indexes and "articles_source" not in indexes and old.store._counted
    assert [p.chunk_id for p in old.search("store", k=2, source=source, after="2000")] == [p.chunk_id for p in found]


# --- The CLI, the JSON route and the page ---


def test_the_cli_filters_and_refuses_bad_filters(wikinews_library):
    index = wikinews_library.settings.index_dir
    result = run("search", QUESTION, "--index", index, "-k", "4", "--source", GUM, "--json")
    assert result.returncode == 0, result.stderr
    passages = json.loads(result.stdout)["passages"]
    assert len(passages) == 4 and {p["source"] for p in passages} == {GUM}
    result = run("search", QUESTION, "--index", index, "--after", "2009", "--before", "2009-12", "--json")
    assert all("2009" in p["date"] for p in json.loads(result.stdout)["passages"])
    bad = run("search", QUESTION, "--index", index, "--after", "May")
    assert bad.returncode != 0 and '"after" must be a date as YYYY-MM-DD' in bad.stderr
    empty = run("search", QUESTION, "--index", index, "--after", "2030")
    assert empty.returncode == 0 and "No article matches these filters" in empty.stdout
    unknown = run("search", QUESTION, "--index", index, "--source", "BBC")
    assert unknown.returncode != 0 and "No article has source 'BBC'" in unknown.stderr


@pytest.fixture(scope="module")
def app_url(start_app, wikinews_library):
    with start_app(wikinews_library.settings.index_dir) as url:
        yield url


def test_the_json_route_filters_with_the_same_names(app_url):
    status, answer = post(app_url, {"question": QUESTION, "k": 5, "source": [GUM]})
    assert status == 200 and len(answer["passages"]) == 5 and {p["source"] for p in answer["passages"]} == {GUM}
    status, answer = post(app_url, {"question": QUESTION, "k": 3, "article": "steve jobs resigns"})
    assert status == 200 and {p["title"] for p in answer["passages"]} == {"Apple executive Steve Jobs resigns"}
    for body, message in [
        ({"after": "2009-13"}, '"after" must be a date'),
        ({"source": "BBC"}, "No article has source 'BBC'"),
        ({"source": {"a": 1}}, '"source" must be'),
    ]:
        status, answer = post(app_url, {"question": QUESTION, **body})
        assert status == 400 and message in answer["error"], answer
    status, answer = post(app_url, {"question": QUESTION, "article": "zebra crossing"})
    assert status == 404 and "No article has the id 'zebra crossing'" in answer["error"]
    status, answer = post(app_url, {"question": QUESTION, "source": None, "after": "", "before": None})
    assert status == 200 and len(answer["passages"]) == 5  # null and "": no filter


def test_the_page_filters_beside_the_passages(page):
    page.locator("#qa-filter").get_by_text("Filter").click()
    page.locator("#qa-article input, #qa-article textarea").first.fill("steve jobs resigns")
    ask(page, QUESTION, "[1]")
    panel = page.locator("#qa-passages").inner_text()
    assert "Apple executive Steve Jobs resigns" in panel and "Cisco" not in panel
    page.locator("#qa-article input, #qa-article textarea").first.fill("")
    page.locator("#qa-after input, #qa-after textarea").first.fill("someday")
    page.locator("#qa-question textarea").fill(QUESTION)
    page.locator("#qa-question textarea").press("Enter")
    page.get_by_text('"after" must be a date as YYYY-MM-DD').first.wait_for()
    page.locator("#qa-after input, #qa-after textarea").first.fill("2030")
    ask(page, QUESTION, "No article matches the filters")
    assert not page.outside
