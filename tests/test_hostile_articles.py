"""Hostile articles: no single article can stop a build, and parsing an article is bounded in time and memory."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa import Library, articles
from qa.articles import MAX_FIELD_CHARS, normalize

from conftest import ROOT, SEEDS, TINY, FakeEmbedder

SURROGATE_LINE = '{"title": "Poisoned", "text": "x \\ud800 y. The harbour reopened on Monday after the storm."}\n'


def alias_bomb(levels: int) -> str:
    """Markdown whose front matter nests YAML aliases: each level refers to the one before nine times."""
    lines, previous = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'], "a"
    for n in range(1, levels):
        name = chr(ord("a") + n)
        lines.append(f"{name}: &{name} [{','.join(['*' + previous] * 9)}]")
        previous = name
    return "---\n" + "\n".join(lines) + f"\ntitle: *{previous}\n---\nThe body of a harmless looking article.\n"


def tiny_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, text in TINY.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


# ---- 1. a lone surrogate in a .jsonl line blocked every build, for good ----


def test_a_lone_surrogate_in_jsonl_is_indexed_through_qa_build(tmp_path):
    """The issue's reproduction, through the real `qa build --no-app` and the real model."""
    folder = tiny_folder(tmp_path / "articles")
    (folder / "s.jsonl").write_text(SURROGATE_LINE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    cmd = [sys.executable, "-m", "qa.cli", "build", str(folder), "--index", str(tmp_path / "index"), "--no-app"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "4 added" in run.stdout and "0 skipped" in run.stdout
    search = [sys.executable, "-m", "qa.cli", "search", "When did the harbour reopen?", "--index"]
    run = subprocess.run([*search, str(tmp_path / "index"), "--json", "-k", "1"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    top = json.loads(run.stdout)["passages"][0]
    assert top["title"] == "Poisoned" and top["text"].startswith("x \ufffd y.")


def test_text_is_normalised_once_where_it_is_read(tmp_path):
    path = tmp_path / "odd.jsonl"
    record = {
        "title": "Cafe\u0301 \udc80",
        "source": "wire\x07",
        "text": "Cafe\u0301 \ud800 opened.\x1b Bells\x00 rang.",
    }
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    (article,) = articles.read([path])
    assert article.title == "Caf\u00e9 \ufffd" and article.source == "wire"
    assert article.text == "Caf\u00e9 \ufffd opened. Bells rang."
    for field in (article.title, article.source, article.text, article.id):
        field.encode("utf-8")  # strict: nothing unencodable is left


@pytest.mark.parametrize(
    "raw, expected",
    [("plain", "plain"), ("\ud800", "\ufffd"), ("a\x00b\x08c", "abc"), ("tab\tline\nend", "tab\tline\nend"),
     ("e\u0301", "\u00e9"), ("\U0001f600", "\U0001f600")],
)  # fmt: skip
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_a_file_name_that_is_not_utf8_is_indexed_with_escapes(tmp_path, fake_embedder):
    folder = tiny_folder(tmp_path / "articles")
    (folder / "caf\udce9.txt").write_text("The cafe on the corner closed after forty years.\n")  # the byte 0xe9
    lib = Library.build([folder], index_dir=tmp_path / "index", embedder=fake_embedder)
    assert lib.last_build.added == 4 and not lib.last_build.skipped
    assert "articles/caf\\xe9.txt" in lib.store.article_hashes()


# ---- 2. YAML aliases in front matter expanded 500 bytes into hundreds of MB ----


def test_front_matter_aliases_are_refused_at_once(tmp_path):
    (tmp_path / "bomb.md").write_text(alias_bomb(9), encoding="utf-8")  # 9 levels: 9**9 strings if expanded
    (tmp_path / "fine.md").write_text("---\ntitle: Fine\n---\nA fine article.\n", encoding="utf-8")
    skipped: list = []
    began = time.perf_counter()
    found = list(articles.read([tmp_path], skipped))
    assert time.perf_counter() - began < 5
    assert [a.title for a in found] == ["Fine"]
    assert "uses a YAML alias" in skipped[0].reason and "write the value out" in skipped[0].reason


def test_huge_front_matter_is_refused(tmp_path):
    (tmp_path / "big.md").write_text("---\ntitle: x\nnote: " + "y" * 70_000 + "\n---\nBody.\n", encoding="utf-8")
    skipped: list = []
    assert list(articles.read([tmp_path], skipped)) == []
    assert "front matter over 64 KB" in skipped[0].reason


def test_long_title_source_and_url_are_cut_with_a_warning(tmp_path, caplog):
    title, url = "T" * 5000, "https://example.com/" + "u" * 5000
    (tmp_path / "long.jsonl").write_text(json.dumps({"title": title, "url": url, "text": "Body text."}) + "\n")
    with caplog.at_level(logging.WARNING, logger="qa.articles"):
        (article,) = articles.read([tmp_path])
    assert len(article.title) == MAX_FIELD_CHARS + 1 and article.title.endswith("…")
    assert len(article.url) <= articles.MAX_URL_CHARS + 1
    assert any(
        "its title is 5000 characters" in r.getMessage() and "long.jsonl" in r.getMessage() for r in caplog.records
    )


def test_what_was_cut_is_in_the_build_report_qa_build_and_the_panel(tmp_path, capsys):
    from qa.cli import main as cli_main
    from qa.web.adding import Added
    from qa.web.render import added_html

    folder = tiny_folder(tmp_path / "articles")
    (folder / "long.jsonl").write_text(json.dumps({"title": "T" * 5000, "text": "Body text."}) + "\n")
    report = Library.build([folder], index_dir=tmp_path / "index", embedder=FakeEmbedder()).last_build
    assert report.notices == [f"{folder / 'long.jsonl'}:1: its title is 5000 characters; cut to {MAX_FIELD_CHARS}"]
    added = Added(folder, [("long.jsonl", folder / "long.jsonl")], [], report)
    assert "its title is 5000 characters" in added_html(added)
    assert cli_main(["build", str(folder), "--index", str(tmp_path / "index2"), "--no-app"]) == 0
    assert "note: " + report.notices[0] in capsys.readouterr().err


def test_cut_fields_are_listed_up_to_a_point_then_summed_up(tmp_path):
    lines = [json.dumps({"title": f"{n} " + "T" * 500, "text": f"Text {n}."}) for n in range(articles.MAX_LISTED + 5)]
    (tmp_path / "long.jsonl").write_text("\n".join(lines) + "\n")
    notices: list = []
    assert len(list(articles.read([tmp_path], notices=notices))) == articles.MAX_LISTED + 5
    assert len(notices) == articles.MAX_LISTED + 1
    assert notices[-1] == f"{tmp_path / 'long.jsonl'}: 5 more fields cut too, not listed"


def test_deeply_nested_json_line_is_skipped(tmp_path):
    (tmp_path / "deep.jsonl").write_text("[" * 100_000 + "\n" + json.dumps({"text": "Still read."}) + "\n")
    skipped: list = []
    found = list(articles.read([tmp_path], skipped))
    assert [a.text for a in found] == ["Still read."]
    assert skipped[0].path.endswith("deep.jsonl:1") and "nested too deeply" in skipped[0].reason


# ---- the second line of defence: an article that still fails is left out, the build goes on ----


class Refusing(FakeEmbedder):
    """A fake model that refuses texts holding POISON when tokenising and VENOM when embedding."""

    def token_spans(self, texts):
        if any("POISON" in t for t in texts):
            raise TypeError("TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]")
        return super().token_spans(texts)

    def encode_passages(self, texts, spans, progress=None):
        if any("VENOM" in t for t in texts):
            raise RuntimeError("the model choked")
        return super().encode_passages(texts, spans, progress)


def test_an_article_that_fails_to_chunk_or_embed_is_left_out_and_the_build_goes_on(tmp_path):
    folder = tiny_folder(tmp_path / "articles")
    (folder / "poison.txt").write_text("A POISON pill in the text.\n")
    (folder / "venom.txt").write_text("A VENOM drop in the text.\n")
    lib = Library.build([folder], index_dir=tmp_path / "index", embedder=Refusing())
    report = lib.last_build
    assert (report.added, len(report.skipped)) == (3, 2)
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert "could not be split into passages (TypeError: TextEncodeInput" in reasons["poison.txt"]
    assert "could not be embedded (RuntimeError: the model choked)" in reasons["venom.txt"]
    assert lib.search("When is the 787 delivered?", k=1)[0].article_id == "articles/boeing.txt"
    again = Library.build([folder], index_dir=tmp_path / "index", embedder=Refusing()).last_build
    assert (again.unchanged, len(again.skipped)) == (3, 2)  # tried again, left out again, nothing lost


def test_a_build_stopped_by_its_progress_function_still_stops(tmp_path):
    """Leaving out failing articles must not swallow a stop (a `qa build` that went away)."""
    folder = tiny_folder(tmp_path / "articles")
    index = tmp_path / "index"
    Library.build([folder], index_dir=index, embedder=FakeEmbedder())
    (folder / "new.txt").write_text("Fresh news about the harbour.\n")

    class GoneError(Exception):
        pass

    class Reporting(FakeEmbedder):  # calls its progress function as Embedder.encode_passages does
        def encode_passages(self, texts, spans, progress=None):
            progress(0, len(texts))
            return super().encode_passages(texts, spans)

    def progress(done, total):
        raise GoneError()

    with pytest.raises(GoneError):
        Library.build([folder], index_dir=index, embedder=Reporting(), progress=progress)
    assert Library.build([folder], index_dir=index, embedder=FakeEmbedder()).last_build.added == 1


# ---- property: arbitrary bytes under any supported name never fail a build or cost a good article ----

SUFFIXES = sorted(articles.SUFFIXES)
code_points = st.integers(0, 0x10FFFF)


@st.composite
def hostile_file(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(SUFFIXES))
    kind = draw(st.sampled_from(["bytes", "text", "escaped-json", "front-matter"]))
    if kind == "bytes":
        data = draw(st.binary(max_size=600))
    elif kind == "text":
        data = draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    elif kind == "escaped-json":  # \\uXXXX escapes: lone surrogates arrive as valid JSON in a valid UTF-8 file
        chars = draw(st.lists(code_points, max_size=40))
        text = "".join(f"\\u{c:04x}" if c <= 0xFFFF else chr(c) for c in chars)
        data = ('{"title": "' + text + '", "text": "Words ' + text + ' more words."}\n').encode("utf-8")
    else:
        title = draw(st.text(max_size=80)).encode("utf-8", "surrogatepass")
        data = b"---\ntitle: " + title + b"\n---\n" + draw(st.binary(max_size=200))
    return f"hostile{suffix}", data


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(hostile_file())
def test_no_file_fails_a_build_or_costs_the_good_article_beside_it(tmp_path_factory, real_embedder, item):
    name, data = item
    folder = tmp_path_factory.mktemp("hostile") / "articles"
    folder.mkdir()
    (folder / "good.txt").write_text(TINY["boeing.txt"], encoding="utf-8")
    (folder / name).write_bytes(data)
    lib = Library.build([folder], index_dir=folder.parent / "index", embedder=real_embedder, progress=False)
    assert "articles/good.txt" in lib.store.article_hashes()
    assert not any(Path(s.path).name == "good.txt" for s in lib.last_build.skipped)
    vectors = lib.store.vectors(range(lib.info().chunks))
    assert np.isfinite(vectors).all()
    lib.close()


def test_seed_build_is_unchanged_by_normalisation(tmp_path, fake_embedder):
    """Ordinary articles read exactly as before: normalisation only touches what can't be encoded."""
    (article,) = articles.read([SEEDS])
    (path,) = SEEDS.glob("*.md")
    raw = path.read_text(encoding="utf-8")
    body = raw[articles.FRONT_MATTER.match(raw).end() :]
    assert article.text == articles.clean(body) and len(article.text) > 1000


# ---- bounded settings: a build asked for absurd chunks ----


@pytest.mark.parametrize("changes", [{"chunk_tokens": 10**12}, {"chunk_tokens": 4}, {"overlap_sentences": 10**6}])
def test_absurd_chunk_settings_are_refused(changes):
    from qa import Settings

    with pytest.raises(ValueError, match="must be from"):
        Settings(**changes)


def test_chunks_never_exceed_what_the_model_reads(tmp_path, caplog):
    from qa import Settings

    class Short(FakeEmbedder):
        max_tokens = 16

    folder = tiny_folder(tmp_path / "articles")
    with caplog.at_level(logging.WARNING, logger="qa.indexer"):
        lib = Library.build(
            [folder], embedder=Short(), settings=Settings(index_dir=tmp_path / "index", chunk_tokens=500)
        )
    assert any("cut to 16" in r.getMessage() for r in caplog.records)
    spans = Short().token_spans
    rows = lib.store.chunks(range(lib.info().chunks))
    assert rows and all(len(spans([r.text])[0]) <= 16 for r in rows.values())
