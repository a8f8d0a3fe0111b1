"""PDF files to text with page starts: the one module that imports pypdfium2, and where page numbers are looked up.

A PDF's lines are where its layout broke them, not where its sentences end, and qa's sentence splitter
ends a sentence at every line break: so the lines of a paragraph are joined with a space, and a line
stays a line only where it ends a sentence or is short (a heading, a paragraph's last line). PDFium marks
a word hyphenated across two lines (it joins the two halves, leaving a ``\\x02`` between them) and
spells ligatures out ("ﬁ" as "fi"): both come out as the plain word. bench/pdf.py measures this against
pypdf on real PDFs.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ArticleError

# PDFium is not thread-safe: every call into it is made under this lock.
_PDFIUM = threading.Lock()
# What PDFium leaves where a word was hyphenated at a line end (and joined), and a soft hyphen.
_HYPHEN_MARKS = re.compile("[\x02\ufffe\u00ad]")
LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})
_ENDS_SENTENCE = re.compile(r"[.!?:;…][\"'”’)\]]*$")
# A line shorter than this share of the page's usual line is a heading or a paragraph's end.
SHORT_LINE = 0.6
# Pages are joined with a blank line: a page break always ends a sentence, as a line break does.
PAGE_BREAK = "\n\n"


@dataclass(frozen=True)
class PdfText:
    """The text layer of a PDF: one string per page (cleaned by ``tidy``), and its metadata."""

    pages: list[str]
    title: str
    date: str


def extract(data: bytes) -> PdfText:
    """The text of each page of the PDF in ``data``, and its title and creation date (``""`` when unset).

    ArticleError, saying why and what to do, for an encrypted or unreadable PDF.
    """
    import pypdfium2 as pdfium

    with _PDFIUM:
        try:
            doc = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as e:
            if getattr(e, "err_code", None) == pdfium.raw.FPDF_ERR_PASSWORD:
                raise ArticleError("is an encrypted PDF; save a copy without a password and add that") from None
            raise ArticleError(f"is not a PDF qa can read ({_reason(e)}); open it and save it again as PDF") from None
        try:
            pages = [_page_text(doc, n) for n in range(len(doc))]
            meta = doc.get_metadata_dict(skip_empty=True)
        except pdfium.PdfiumError as e:
            raise ArticleError(f"is a damaged PDF ({_reason(e)}); open it and save it again as PDF") from None
        finally:
            doc.close()
    return PdfText([tidy(p) for p in pages], " ".join(meta.get("Title", "").split()), pdf_date(meta))


def _page_text(doc, n: int) -> str:
    page = doc[n]
    try:
        textpage = page.get_textpage()
        try:
            return textpage.get_text_bounded()
        finally:
            textpage.close()
    finally:
        page.close()


def _reason(error: Exception) -> str:
    """PDFium's reason, without pypdfium2's wording around it: "Data format error"."""
    found = re.search(r"PDFium: ([^)]+)\)", str(error))
    return found.group(1) if found else str(error) or type(error).__name__


def tidy(page: str) -> str:
    """One page's text as qa indexes it: hyphenated words whole, ligatures spelled out, the lines of a
    paragraph joined (see the module's docstring), spaces collapsed.

    >>> tidy("The ﬁrst Ex\\x02periments were\\r\\nrun in 2004 by the whole team.\\r\\nResults\\r\\nThey worked.")
    'The first Experiments were run in 2004 by the whole team.\\nResults\\nThey worked.'
    """
    text = _HYPHEN_MARKS.sub("", page.translate(LIGATURES))
    lines = [" ".join(line.split()) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    usual = sorted(len(line) for line in lines)[len(lines) * 3 // 4]  # most lines of a page are full ones
    out = [lines[0]]
    for line in lines[1:]:
        last = out[-1]
        breaks = _ENDS_SENTENCE.search(last) or len(last.rsplit("\n", 1)[-1]) < SHORT_LINE * usual
        out[-1] = last + ("\n" if breaks else " ") + line
    return out[0]


def pdf_date(meta: dict) -> str:
    """The creation date of a PDF's metadata as YYYY-MM-DD, or ``""``.

    >>> pdf_date({"CreationDate": "D:20250208122313Z"}), pdf_date({"CreationDate": "yesterday"})
    ('2025-02-08', '')
    """
    found = re.match(r"(?:D:)?(\d{4})(\d{2})(\d{2})", meta.get("CreationDate", "").strip())
    if not found or not ("01" <= found.group(2) <= "12" and "01" <= found.group(3) <= "31"):
        return ""
    return "-".join(found.groups())


def page_at(pages: Sequence[tuple[int, int]], offset: int | None) -> int | None:
    """The number of the page that holds ``offset``, given (page number, start offset) pairs in order;
    None when there are none (not a PDF) or ``offset`` is None.

    >>> page_at([(1, 0), (2, 40), (3, 40), (4, 90)], 45), page_at([], 45)
    (3, None)
    """
    if not pages or offset is None:
        return None
    n = bisect.bisect_right([start for _, start in pages], offset)
    return pages[max(n - 1, 0)][0]


def pages_around(starts: Sequence[int], start: int, end: int) -> tuple[tuple[int, int], ...]:
    """The (page number, start offset) pairs a passage from ``start`` to ``end`` needs to tell its pages:
    the page it starts on and every page that starts inside it. ``starts``: where each page of the article
    starts, page 1 first.

    >>> pages_around([0, 40, 40, 90, 200], 45, 120)
    ((3, 40), (4, 90))
    """
    first = max(bisect.bisect_right(starts, start) - 1, 0)
    last = bisect.bisect_left(starts, end)
    return tuple((n + 1, starts[n]) for n in range(first, min(last, len(starts))) if starts)
