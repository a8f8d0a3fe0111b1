"""Bad input never hurts: each bad file is skipped with a clear warning, the rest is indexed."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from qa import Library, NoArticlesError, articles

from conftest import TINY, FakeEmbedder

SCRIPT_HTML = """<!doctype html><html><head><title>Lufthansa strike grounds flights</title>
<script>var tracker = "SECRETTRACKER"; document.write("<p>BUYNOWBUYNOW</p>");</script>
<style>.ad { content: "STYLESHEETJUNK"; }</style>
<script type="application/ld+json">{"@type": "NewsArticle", "headline": "JSONLDJUNK"}</script>
</head><body onload="evilOnload()">
<nav><a href="/">Home</a> <a href="/news">News</a></nav>
<script>for (var i = 0; i < 10; i++) { console.log("LOOPJUNK"); }</script>
<article><h1>Lufthansa strike grounds flights</h1>
<p>Pilots at Lufthansa walked out on Monday, grounding more than eight hundred flights across Germany.</p>
<script>window.adsbygoogle = window.adsbygoogle || []; adsbygoogle.push({"slot": "ADSLOTJUNK"});</script>
<p>The union said the strike would last three days unless the airline improved its pension offer.</p>
</article>
<noscript>NOSCRIPTJUNK enable javascript</noscript>
<script src="https://example.com/tracker.js"></script>
</body></html>"""

JUNK = [
    "SECRETTRACKER",
    "BUYNOWBUYNOW",
    "STYLESHEETJUNK",
    "JSONLDJUNK",
    "LOOPJUNK",
    "ADSLOTJUNK",
    "NOSCRIPTJUNK",
    "evilOnload",
]


def make_bad_folder(folder: Path) -> None:
    """The tiny corpus plus one file of each bad kind (the 50 MB one is sparse-free real text)."""
    folder.mkdir()
    for name, text in TINY.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "photo.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(4000))
    (folder / "latin1.txt").write_bytes("Caf\xe9 owners in Montr\xe9al protest the new tax.".encode("latin-1"))
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.md").write_text("---\ntitle: Nothing here\n---\n\n   \n")
    sentence = b"The quick brown fox reports on the markets once again today. "
    with open(folder / "huge.txt", "wb") as f:
        f.write((sentence * (50 * 2**20 // len(sentence) + 1))[: 50 * 2**20])
    (folder / "copy-of-boeing.txt").write_text(TINY["boeing.txt"], encoding="utf-8")
    sub = folder / "nested"
    sub.mkdir()
    (sub / "boeing-again.txt").write_text(TINY["boeing.txt"], encoding="utf-8")
    (folder / "strike.html").write_text(SCRIPT_HTML, encoding="utf-8")
    (sub / "loop").symlink_to("..", target_is_directory=True)
    (folder / "self.txt").symlink_to("self.txt")
    (folder / "dangling.txt").symlink_to("does-not-exist.txt")
    (folder / "zz-vanishes.txt").write_text("This file is deleted while the build reads the folder.\n")
    (folder / "dupes.jsonl").write_text(
        json.dumps({"id": "a", "title": "First", "text": "Oil rose to 100 dollars a barrel."})
        + "\n"
        + json.dumps({"id": "a", "title": "Second", "text": "Gold fell for a third day."})
        + "\n"
        + "{not json\n"
        + json.dumps({"id": "b", "title": "No text"})
        + "\n"
    )


@pytest.fixture(scope="module")
def bad_build(tmp_path_factory, real_embedder):
    """The bad folder built once with the real model; a file vanishes between listing and reading."""
    folder = tmp_path_factory.mktemp("bad") / "articles"
    make_bad_folder(folder)
    read_file = articles._read_file

    def vanishing(path, article_id):
        if path.name == "apple.md":
            (folder / "zz-vanishes.txt").unlink(missing_ok=True)  # at the first reading
        return read_file(path, article_id)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(articles, "_read_file", vanishing)
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("qa").addHandler(handler)
        try:
            lib = Library.build([folder], index_dir=folder.parent / "index", embedder=real_embedder)
        finally:
            logging.getLogger("qa").removeHandler(handler)
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    skipped: dict[str, list[str]] = {}
    for skip in lib.last_build.skipped:
        skipped.setdefault(Path(skip.path.split(":")[0]).name, []).append(skip.reason)
    return lib, skipped, warnings


SKIPS = [
    ("photo.txt", "looks binary, not text"),
    ("latin1.txt", "is not valid UTF-8 (byte 3); convert it to UTF-8"),
    ("empty.txt", "has no text"),
    ("blank.md", "has no text"),
    ("huge.txt", "is 50 MB; one article can be at most 10 MB"),
    ("copy-of-boeing.txt", "same text as articles/boeing.txt, indexed once"),
    ("boeing-again.txt", "same text as articles/boeing.txt, indexed once"),
    ("loop", "folder already visited (symlink loop)"),
    ("self.txt", "can't be read (Too many levels of symbolic links)"),
    ("dangling.txt", "can't be read (No such file or directory)"),
    ("zz-vanishes.txt", "can't be read (No such file or directory)"),
    ("dupes.jsonl", "has the same id as"),
]


@pytest.mark.parametrize(("name", "reason"), SKIPS, ids=[s[0] for s in SKIPS])
def test_each_bad_file_is_skipped_with_a_clear_warning(bad_build, name, reason):
    _, skipped, warnings = bad_build
    assert any(reason in r for r in skipped[name]), skipped[name]
    assert any(name in w and reason in w for w in warnings), warnings


def test_the_rest_is_indexed(bad_build):
    lib, _, _ = bad_build
    ids = set(lib.store.article_hashes())
    assert ids == {
        "articles/apple.md",
        "articles/boeing.txt",
        "articles/gm.md",
        "articles/strike.html",
        "articles/dupes.jsonl#a",
    }
    assert lib.search("When is the first Dreamliner delivery?", k=1)[0].article_id == "articles/boeing.txt"
    assert lib.last_build.summary().startswith("Articles: 5 added, 0 changed, 0 removed, 0 unchanged, 14 skipped")


def test_html_scripts_styles_and_navigation_are_not_indexed(bad_build):
    lib, _, _ = bad_build
    hit = lib.search("How many Lufthansa flights were grounded?", k=1)[0]
    assert hit.article_id == "articles/strike.html" and hit.title == "Lufthansa strike grounds flights"
    text = lib.store.article_text("articles/strike.html")
    assert "eight hundred flights" in text and "pension offer" in text
    for junk in JUNK:
        assert junk not in text


def test_duplicate_ids_keep_the_first_and_rebuild_is_stable(tmp_path):
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "n.jsonl").write_text("".join(json.dumps({"id": "x", "text": t}) + "\n" for t in ("One.", "Two.")))
    index = tmp_path / "index"
    first = Library.build([folder], index_dir=index, embedder=FakeEmbedder())
    assert first.info().chunks == 1
    again = Library.build([folder], index_dir=index, embedder=FakeEmbedder())
    assert (again.last_build.changed, again.last_build.unchanged) == (0, 1)


def test_a_folder_of_only_bad_files_says_what_it_reads(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"")
    (folder / "b.txt").write_bytes(b"\x00\x01\x02")
    with pytest.raises(NoArticlesError, match=r"No readable articles in .* \(2 skipped\)"):
        Library.build([folder], index_dir=tmp_path / "index", embedder=FakeEmbedder())


@pytest.mark.parametrize("size_mb", [9, 11])
def test_size_limit_is_checked_before_reading(tmp_path, size_mb):
    path = tmp_path / "big.md"
    with open(path, "wb") as f:
        f.truncate(size_mb * 2**20)  # sparse zeros: cheap, and "binary" if it is ever read
    skipped = []
    assert list(articles.read([path], skipped)) == []
    expected = "looks binary" if size_mb < 10 else f"is {size_mb} MB; one article can be at most 10 MB"
    assert expected in skipped[0].reason
