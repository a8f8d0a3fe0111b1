"""No passage twice: hits of one article that overlap are merged into one passage (one span, one highlight)."""

import html
import re
from urllib.parse import parse_qsl, urlencode

import pytest

from qa.chat import ask
from qa.search import Passage, merge_overlaps

from conftest import shows_k


def _p(start, end, chunk_id, article="a", score=1.0, similarity=0.5):
    text = "".join(chr(ord("a") + n % 26) for n in range(start, end))  # slices of one article "abc...": they agree
    return Passage(text, score, article, "T", "S", "", "", start, end, chunk_id, similarity=similarity)


@pytest.mark.parametrize(
    "passages, spans",
    [
        ([], []),
        ([_p(0, 10, 1)], [(0, 10)]),
        ([_p(0, 10, 1), _p(8, 20, 2)], [(0, 20)]),  # the better one grows forwards
        ([_p(8, 20, 2), _p(0, 10, 1)], [(0, 20)]),  # and backwards
        ([_p(0, 10, 1), _p(10, 20, 2)], [(0, 10), (10, 20)]),  # touching is not overlapping
        ([_p(0, 10, 1), _p(5, 8, 2)], [(0, 10)]),  # inside
        ([_p(0, 10, 1), _p(5, 15, 2, article="b")], [(0, 10), (5, 15)]),  # another article
        ([_p(0, 10, 1), _p(20, 30, 3), _p(8, 22, 2)], [(0, 30)]),  # grown, it reaches the next one too
        ([_p(20, 30, 3), _p(0, 10, 1), _p(8, 22, 2)], [(0, 30)]),  # kept where the best of them was
    ],
)
def test_merge_overlaps(passages, spans):
    merged = merge_overlaps(passages)
    assert [(p.start, p.end) for p in merged] == spans
    for p in merged:
        assert p.text == _p(p.start, p.end, 0).text  # the text is the article's, once


def test_merged_passage_keeps_the_better_ones_place_and_highlight():
    better = _p(5, 15, 2, score=2.0, similarity=0.4)
    better = Passage(**{**better.__dict__, "highlight_start": 6, "highlight_end": 9})
    merged = merge_overlaps([better, _p(0, 8, 1, score=1.0, similarity=0.6)])
    assert len(merged) == 1
    (m,) = merged
    assert (m.chunk_id, m.score, m.similarity, m.highlight) == (2, 2.0, 0.6, _p(6, 9, 0).text)


QUESTION = "How many people were killed in Mexico in 2020?"  # the seed's top two chunks shared this answer


def _no_overlaps(passages):
    for n, p in enumerate(passages):
        for q in passages[:n]:
            assert not (q.article_id == p.article_id and p.start < q.end and q.start < p.end), (q, p)
    highlights = [p.highlight for p in passages if p.highlight]
    assert len(highlights) == len(set(highlights))


@pytest.mark.parametrize("k", [2, 3])
def test_search_shows_no_passage_twice(seed_library, k):
    passages = seed_library.search(QUESTION, k=k, highlight=True)
    _no_overlaps(passages)
    assert shows_k(passages, k)


def test_a_long_article_ranked_out_of_order_still_gives_k_passages():
    """Review finding: chunks ranked 5, 6, 4, 7, 3, 8, ... of a 12-chunk article chained into one passage."""
    chunks = [_p(10 * n, 10 * n + 12, n) for n in range(12)]  # each overlaps the next by 2 characters
    ranked = [chunks[n] for n in (5, 6, 4, 7, 3, 8, 2, 9, 1, 10, 0, 11)]
    merged = merge_overlaps(ranked, k=5)
    # The first five (chunks 3-7) are one run: merged, one passage; later chunks that touch it are left out.
    assert merged[0].start == 30 and merged[0].end == 82 and len(merged) > 1
    _no_overlaps(merged)
    assert len(merge_overlaps([chunks[n] for n in (0, 2, 4, 6, 8, 1, 3)], k=5)) == 5


def test_passages_after_the_kth_join_none():
    first, tenth = _p(0, 10, 1), _p(8, 20, 9)
    assert merge_overlaps([first, _p(30, 40, 2), tenth], k=2) == [first, _p(30, 40, 2)]
    assert [(p.start, p.end) for p in merge_overlaps([first, tenth, _p(30, 40, 2)], k=2)] == [(0, 20), (30, 40)]


def test_chat_shows_no_passage_twice(seed_library):
    first = ask(seed_library, "Who traveled to Mexico City?")
    answer = ask(seed_library, QUESTION, [first.turn], k=5)
    _no_overlaps(list(answer.passages))


# --- The whole article a click away (qa.web.render.article_html) ---


def test_the_article_view_marks_the_passage_and_escapes_everything():
    from qa.web.render import GONE, article_html

    article = "<b>Intro</b>. " + "x" * 50 + " One. Two. Three. <script>alert(1)</script>"
    start = article.index("One.")
    p = Passage(
        article[start : start + 9],
        1.0,
        "a",
        "T <script>",
        "S",
        "2024-01-01",
        "javascript:alert(1)",
        start,
        start + 9,
        1,
        highlight_start=start + 5,
        highlight_end=start + 9,
    )
    shown = article_html(p, article)
    assert '<span class="qa-here">One. <mark class="qa-answer">Two.</mark></span>' in shown
    assert "&lt;b&gt;Intro&lt;/b&gt;" in shown and "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert "<script" not in shown and "javascript:" not in shown and "<a " not in shown
    assert article_html(p, "another text entirely" * 10) == GONE  # rebuilt meanwhile: not shown
    assert article_html(p, None) == GONE
    linked = article_html(Passage(**{**p.__dict__, "url": "https://example.org/a"}), article)
    assert '<a href="https://example.org/a"' in linked


def test_a_long_article_shows_a_window_around_the_passage(monkeypatch):
    from qa.web import render

    monkeypatch.setattr(render, "MAX_ARTICLE_CHARS", 100)
    article = "a" * 1000 + "Here it is." + "b" * 1000
    start = article.index("Here")
    p = Passage("Here it is.", 1.0, "a", "T", "", "", "", start, start + 11, 1)
    shown = render.article_html(p, article)
    assert "Here it is." in shown and "characters before" in shown and "characters after" in shown
    assert shown.count("a") < 200


def test_the_panel_fetches_an_article_when_it_is_opened(seed_library):
    """The reply holds a link, not the article; the route answers the article, marked and escaped, or says why not."""
    from starlette.testclient import TestClient

    from qa.web.render import GONE, passages_html
    from qa.web.server import app

    answer = ask(seed_library, QUESTION, k=1)
    panel = passages_html(answer)
    p = answer.passages[0]
    article = seed_library.store.article_text(p.article_id)
    assert len(article) > len(p.text) and article[: p.start] not in panel  # not the article itself
    src = html.unescape(re.search(r'data-src="([^"]+)"', panel).group(1))
    client = TestClient(app(seed_library))
    shown = client.get("/" + src)
    assert shown.status_code == 200 and "default-src 'none'" in shown.headers["content-security-policy"]
    assert f'<mark class="qa-answer">{html.escape(p.highlight)}</mark>' in shown.text
    assert html.escape(article[: p.start][-200:]) in shown.text and "Blinken in Mexico City" in shown.text
    path, query = src.split("?")
    fields = dict(parse_qsl(query))
    for change, status in (({"digest": "0" * 16}, 404), ({"id": "nothing"}, 404), ({"start": p.end + 1}, 400)):
        refused = client.get(f"/{path}?{urlencode({**fields, **change})}")
        assert refused.status_code == status and "qa-note" in refused.text and "qa-article-text" not in refused.text
    assert client.get(f"/{path}?{urlencode({**fields, 'digest': '0'})}").text == GONE
    assert "article-view" not in client.get("/api/openapi.json").text  # the page's route, not the JSON API
