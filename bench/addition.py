"""Cost of one addition from the app's "Add articles" panel on a large collection, against a full re-read.

    .venv/bin/python bench/addition.py [--articles 2000] [--rounds 5] [--model NAME] [--no-write]

Generates ``--articles`` short Markdown and text articles in 20 sub-folders of a temporary
collection and indexes them; then, ``--rounds`` times, adds one new article through
``qa.web.adding.add`` (what the panel runs: save the file, index it) and, alternating with it,
re-indexes the collection with ``Library.update`` (which reads every article). Medians are
written to docs/benchmarks.md. The embedder is the tests' word-hashing FakeEmbedder unless ``--model`` names a
real model: what is measured is the reading and writing around the one article to embed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from qa import Library, Settings  # noqa: E402
from qa.web import adding  # noqa: E402

from tests.conftest import FakeEmbedder  # noqa: E402

WORDS = (
    "market union strike court bank oil gold rain harbour minister council vote election storm flood bridge "
    "railway airline pilot factory jobs plant export import price shares inflation budget school hospital"
).split()


def article(rng: random.Random, n: int) -> str:
    sentences = [" ".join(rng.choices(WORDS, k=rng.randint(6, 14))).capitalize() + "." for _ in range(4)]
    return f"Report {n}. " + " ".join(sentences)


def generate(folder: Path, count: int, rng: random.Random) -> None:
    for n in range(count):
        sub = folder / f"section-{n % 20:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        if n % 2:
            (sub / f"report-{n:05d}.txt").write_text(article(rng, n) + "\n", "utf-8")
        else:
            body = f"---\ntitle: Report {n}\nsource: Bench wire\ndate: 2024-01-01\n---\n{article(rng, n)}\n"
            (sub / f"report-{n:05d}.md").write_text(body, "utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=2000, help="articles in the collection")
    parser.add_argument("--rounds", type=int, default=5, help="additions (and full re-reads) to time")
    parser.add_argument("--model", default="", help="a real model to embed with (default: a hashing stand-in)")
    parser.add_argument("--no-write", action="store_true", help="print the section; leave docs/benchmarks.md")
    args = parser.parse_args()
    if args.model:
        from qa.embedding import load_embedder

        embedder = load_embedder(args.model)
    else:
        embedder = FakeEmbedder()
    rng = random.Random(11)
    settings = Settings(mode="lexical", answer_candidates=0)
    with tempfile.TemporaryDirectory(prefix="qa-bench-add-") as tmp:
        root = Path(tmp)
        folder = root / "articles"
        generate(folder, args.articles, rng)
        began = time.perf_counter()
        lib = Library.build([folder], index_dir=root / "index", embedder=embedder, settings=settings, progress=False)
        build_s = time.perf_counter() - began
        additions, rereads = [], []
        for n in range(args.rounds):
            upload = root / "uploads" / str(n) / f"new-{n}.txt"
            upload.parent.mkdir(parents=True)
            upload.write_text(article(rng, 10**6 + n) + "\n", "utf-8")
            began = time.perf_counter()
            added = adding.add(lib, folder / "uploads", [str(upload)])
            additions.append(time.perf_counter() - began)
            if added.report is None or added.report.added != 1:
                raise RuntimeError(f"the addition did not index one article: {added}")
            began = time.perf_counter()
            report = lib.update()
            rereads.append(time.perf_counter() - began)
            if report.added or report.changed or report.removed:
                raise RuntimeError(f"a full re-read after the addition found something to do: {report.summary()}")
        total = lib.info().articles
    body = (
        "| case | median | min |\n|---|---:|---:|\n"
        f"| one addition through the panel (`qa.web.adding.add`) | {statistics.median(additions):.3f} s "
        f"| {min(additions):.3f} s |\n"
        f"| re-indexing the whole collection, nothing new (`Library.update`) | {statistics.median(rereads):.3f} s "
        f"| {min(rereads):.3f} s |\n\n"
        f"{args.rounds} rounds on a collection of {args.articles} short articles (.md and .txt, 20 folders; "
        f"{total} indexed at the end), built in {build_s:.1f} s with "
        f"{args.model or 'the word-hashing FakeEmbedder of the tests'}. An addition saves one new article into a "
        "new sub-folder of the collection and indexes it; the re-indexing reads every article to compare hashes. "
        "Until additions read only what was added (commit 4ea1141), each addition did that re-indexing: "
        "0.79 s on 2,000 articles and 4.75 s on 20,000 (`--articles 20000`; 0.20 s after), medians on this machine."
    )
    title = f"One addition from the app ({args.articles} articles)"
    if args.no_write:
        print(f"## {title}\n\n{body}")
    else:
        write_section("addition", title, body)
        print(body)


if __name__ == "__main__":
    main()
