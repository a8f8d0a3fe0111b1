"""Readers for each format, cleaning, ids and the files that must be skipped."""

import json
import logging
import tracemalloc

import pytest

from qa.articles import MAX_LISTED, Article, Skipped, clean, read, scan

from conftest import SEEDS, WIKINEWS


def one(path):
    skipped = []
    found = list(read([path], skipped))
    return found, skipped


def test_text_file_title_falls_back_to_file_name(tmp_path):
    (tmp_path / "city_council-vote.txt").write_text("The council voted. It passed.", encoding="utf-8")
    [a], _ = one(tmp_path)
    assert a.title == "city council vote"
    assert a.text == "The council voted. It passed."
    assert a.id == f"{tmp_path.name}/city_council-vote.txt"


def test_markdown_front_matter(tmp_path):
    (tmp_path / "a.md").write_text(
        "---\ntitle: Storm hits coast\nsource: Daily\ndate: 2020-05-01\nurl: https://example.org/a\n---\n"
        "# Heading\nWinds reached 120 km/h.\n",
        encoding="utf-8",
    )
    [a], _ = one(tmp_path / "a.md")
    assert (a.title, a.source, a.date, a.url) == ("Storm hits coast", "Daily", "2020-05-01", "https://example.org/a")
    assert a.text == "# Heading\nWinds reached 120 km/h."


def test_markdown_without_front_matter_uses_heading(tmp_path):
    (tmp_path / "b.md").write_text("# Rates rise\nThe bank raised rates.", encoding="utf-8")
    [a], _ = one(tmp_path)
    assert a.title == "Rates rise"


def test_markdown_with_broken_front_matter_is_skipped(tmp_path):
    (tmp_path / "c.md").write_text("---\ntitle: [unclosed\n---\nBody.", encoding="utf-8")
    found, [skip] = one(tmp_path)
    assert not found and "front matter" in skip.reason


def test_html_main_text_without_scripts_or_navigation(tmp_path):
    html = """<html><head><title>Mayor resigns</title><style>p {color: red}</style>
    <script>var tracking = "SCRIPTTEXT";</script></head><body>
    <nav><a href="/">Home</a> | <a href="/about">NAVTEXT</a></nav>
    <article><h1>Mayor resigns</h1><p>The mayor of Springfield resigned on Monday after a long inquiry
    into the budget.</p><p>Her deputy will serve until an election is held in the spring.</p></article>
    <footer>FOOTERTEXT Copyright 2020</footer></body></html>"""
    (tmp_path / "m.html").write_text(html, encoding="utf-8")
    [a], _ = one(tmp_path)
    assert a.title == "Mayor resigns"
    assert "resigned on Monday" in a.text and "deputy will serve" in a.text
    for junk in ("SCRIPTTEXT", "NAVTEXT", "color: red", "<p>"):
        assert junk not in a.text


def test_tiny_html_page_still_gives_its_text(tmp_path):
    (tmp_path / "t.htm").write_text("<p>Short note.</p><script>alert(1)</script>", encoding="utf-8")
    [a], _ = one(tmp_path)
    assert a.text == "Short note."


def test_jsonl_records(tmp_path):
    lines = [
        {"id": "x1", "title": "First", "text": "One.", "source": "S", "date": "2001", "url": None},
        {"text": "Two, without metadata."},
        {"title": "no text"},
        "not an object",
    ]
    path = tmp_path / "feed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n{broken\n\n", encoding="utf-8")
    found, skipped = one(path)
    assert [(a.id, a.title, a.source, a.url) for a in found] == [
        ("feed.jsonl#x1", "First", "S", ""),
        ("feed.jsonl#2", "feed 2", "", ""),
    ]
    assert [s.path.rsplit(":", 1)[1] for s in skipped] == ["3", "4", "5"]


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR" + bytes(range(256)), "binary"),
        ("latin1.txt", "caf\xe9 au lait".encode("latin-1"), "UTF-8"),
        ("empty.txt", b"", "no text"),
        ("blank.md", b"---\ntitle: Only meta\n---\n\n  \n", "no text"),
    ],
)
def test_unreadable_files_are_skipped_and_named(tmp_path, caplog, name, data, reason):
    (tmp_path / name).write_bytes(data)
    (tmp_path / "good.txt").write_text("Fine text.", encoding="utf-8")
    found, [skip] = one(tmp_path)
    assert [a.title for a in found] == ["good"]
    assert isinstance(skip, Skipped) and skip.path.endswith(name) and reason in skip.reason
    assert name in caplog.text


def test_unknown_suffixes_and_hidden_files_are_ignored(tmp_path):
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / ".secret.txt").write_text("hidden", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.txt").write_text("Deep text.", encoding="utf-8")
    found, skipped = one(tmp_path)
    assert [a.id for a in found] == [f"{tmp_path.name}/sub/deep.txt"] and not skipped


def test_identical_texts_are_indexed_once(tmp_path):
    (tmp_path / "a.txt").write_text("Same story.", encoding="utf-8")
    (tmp_path / "b.txt").write_text("Same story.\n", encoding="utf-8")
    found, [skip] = one(tmp_path)
    assert len(found) == 1 and "same text" in skip.reason


def test_clean_drops_boilerplate_and_tweet_links():
    raw = "Body line one.\r\nnetworks. pic.twitter.com/K4EiRJK5IZ\n\n\n\nBe the first to comment\nShare this article\n"
    assert clean(raw) == "Body line one.\nnetworks."


def test_seed_article_reads_with_metadata():
    [a], skipped = one(SEEDS)
    assert not skipped
    assert a.source == "OAN Newsroom" and a.date == "2021-10-08" and "Blinken" in a.title
    assert "Merida Initiative" in a.text
    assert "Be the first to comment" not in a.text and "pic.twitter.com" not in a.text


def test_wikinews_jsonl_reads_all_articles():
    found, skipped = one(WIKINEWS)
    assert len(found) + len(skipped) == 58
    assert len(found) >= 55
    assert all(a.title and a.text and a.id.startswith("articles.jsonl#") for a in found)
    assert len({a.id for a in found}) == len(found)


def test_same_ids_from_another_working_directory(tmp_path, monkeypatch):
    (tmp_path / "col").mkdir()
    (tmp_path / "col" / "a.txt").write_text("Text.", encoding="utf-8")
    ids_here = [a.id for a in read([tmp_path / "col"])]
    monkeypatch.chdir(tmp_path)
    assert [a.id for a in read(["col"])] == ids_here == ["col/a.txt"]


def test_reading_only_some_files_gives_the_ids_order_and_skips_of_a_full_read(tmp_path):
    root = tmp_path / "news"
    for name, text in {
        "b.txt": "Banks lent more.",
        "a.txt": "Apples were cheap.",
        "sub/z/c.md": "# Court\nThe court ruled.",
        "sub/d.txt": "Dams burst.",
        "e.jsonl": '{"id": "r1", "text": "Eels swam."}\n{"text": "Apples were cheap."}\n',
        ".drafts/f.txt": "Hidden draft.",
        "g.docx": "Not an article.",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    skipped_all = []
    everything = list(read([root], skipped_all))
    files = ["sub/z/c.md", "e.jsonl", "a.txt", "sub/d.txt", ".drafts/f.txt", "g.docx", "../elsewhere.txt"]
    skipped = []
    some = list(read([root], skipped, only=[root / f for f in files]))
    assert [a.id for a in some] == [a.id for a in everything if a.id != "news/b.txt"]
    assert [a.id for a in some] == ["news/a.txt", "news/e.jsonl#r1", "news/sub/d.txt", "news/sub/z/c.md"]
    assert skipped == skipped_all == [Skipped(f"{root}/e.jsonl:2", "same text as news/a.txt, indexed once")]
    assert list(read([root], only=[])) == []


def test_reading_only_a_file_given_by_a_relative_path_names_it_from_its_source_folder(tmp_path, monkeypatch):
    (tmp_path / "news" / "2024").mkdir(parents=True)
    (tmp_path / "news" / "2024" / "oil.txt").write_text("Oil rose.", encoding="utf-8")
    monkeypatch.chdir(tmp_path / "news")
    [a] = read([tmp_path / "news"], only=["2024/oil.txt"])
    assert (a.id, a.path) == ("news/2024/oil.txt", str(tmp_path / "news" / "2024" / "oil.txt"))


# ---- .jsonl: read a line at a time, junk lines listed up to a point ----


def test_jsonl_lines_end_at_lf_crlf_and_cr_only(tmp_path):
    records = [{"id": "a", "text": "One\u2028still one."}, {"id": "b", "text": "Two."}]
    records.append({"id": "c", "text": "Three."})
    lines = [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in records]
    path = tmp_path / "ends.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + lines[0] + b"\x1c\xc2\x85\r\n" + lines[1] + b"\r\r\n{broken\r" + lines[2])
    found, skipped = one(path)
    assert [(a.id, a.text, a.path.rsplit(":", 1)[1]) for a in found] == [
        ("ends.jsonl#a", "One\u2028still one.", "1"),  # \u2028, \x1c and \x85 are no line ends
        ("ends.jsonl#b", "Two.", "2"),
        ("ends.jsonl#c", "Three.", "5"),
    ]
    assert [s.path.rsplit(":", 1)[1] for s in skipped] == ["4"]


def test_jsonl_that_is_not_utf8_further_down_is_skipped_whole(tmp_path):
    good = json.dumps({"text": "Fine."}).encode() + b"\n"
    (tmp_path / "late.jsonl").write_bytes(good * 3 + b'{"text": "caf\xe9"}\n')
    found, [skip] = one(tmp_path / "late.jsonl")
    assert found == [] and skip.reason == f"is not valid UTF-8 (byte {len(good) * 3 + 13}); convert it to UTF-8"


def test_jsonl_records_are_read_lazily(tmp_path):
    path = tmp_path / "feed.jsonl"
    path.write_text(json.dumps({"text": "Story."}) + "\n{broken\n", encoding="utf-8")
    skipped = []
    reading = read([path], skipped)
    assert next(reading).text == "Story." and skipped == []  # the second line is not parsed yet
    assert list(reading) == [] and len(skipped) == 1


def test_junk_lines_are_listed_up_to_a_point_then_summed_up(tmp_path, caplog):
    path = tmp_path / "junk.jsonl"
    path.write_text(json.dumps({"text": "The one article."}) + "\n" + "1\n" * 5000 + "{\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="qa.articles"):
        found, skipped = one(path)
    assert [a.text for a in found] == ["The one article."]
    assert len(skipped) == MAX_LISTED + 1 and all(s.reason == 'has no "text" string field' for s in skipped[:-1])
    assert skipped[-1].path == str(path)
    assert skipped[-1].reason.startswith(f"{5001 - MAX_LISTED:,} more lines skipped too")
    assert 'has no "text" string field' in skipped[-1].reason and "is not valid JSON" in skipped[-1].reason
    assert len(caplog.records) == MAX_LISTED + 1


def test_copies_of_one_line_are_summed_up_too(tmp_path):
    path = tmp_path / "copies.jsonl"
    path.write_text((json.dumps({"text": "Same again."}) + "\n") * 1000, encoding="utf-8")
    found, skipped = one(path)
    assert len(found) == 1 and len(skipped) == MAX_LISTED + 1
    assert skipped[-1].reason.startswith(f"{999 - MAX_LISTED} more lines skipped too")


def test_scan_yields_every_skip_as_it_is_met(tmp_path):
    """What a caller needs to stop a read that gives nothing but skips (the app's time estimate)."""
    path = tmp_path / "junk.jsonl"
    path.write_text("1\n" * 100 + json.dumps({"text": "Last."}) + "\n", encoding="utf-8")
    skipped = []
    items = list(scan([path], skipped))
    assert [type(x) for x in items] == [Skipped] * 100 + [Article]
    assert len(skipped) == MAX_LISTED + 1


def test_reading_a_jsonl_takes_little_more_memory_than_its_bytes(tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as f:  # 8 MB; decoded whole, its text alone is 4 times that
        for n in range(4000):
            f.write(json.dumps({"title": f"T{n}", "text": f"Word {n} é € " * 200}, ensure_ascii=False) + "\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = sum(1 for _ in read([path]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 4000 and peak < 2 * size, f"{peak / size:.1f} times the file's size"
