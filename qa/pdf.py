"""PDF files to text with page starts: the one module that imports pypdfium2, and where page numbers are looked up.

A page's running header and footer and its page number are dropped (lines that start or end several pages).
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
from collections import Counter
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
# A page's first or last line that holds a number and, the numbers aside, starts or ends another page too
# ("Chapter 2: ASN.1 structure handling 3", "... 4") is a running header or footer, not content, as is one
# without a number that starts or ends a quarter of the pages, three at least ("Shared MIME-info Database"; a
# heading such as "Discussion" that starts one page in ten is kept), and a line that is only a page number.
RUNNING_SHARE, RUNNING_PAGES = 0.25, 3
_PAGE_NUMBER = re.compile(r"(?i:page\s*)?(\d{1,5}|[ivxlc]{1,7})(\s*(/|of)\s*\d{1,5})?")
# Pages are joined with a blank line (a sentence ends there, as at any line break), or with a space where a
# sentence goes on from one page to the next.
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
    pages = [join_lines(lines) for lines in drop_furniture([page_lines(p) for p in pages])]
    return PdfText(pages, pdf_title(meta), pdf_date(meta))


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
    return join_lines(page_lines(page))


def page_lines(page: str) -> list[str]:
    """The non-empty lines of a page as PDFium gives it, hyphenated words whole, ligatures spelled out."""
    text = _HYPHEN_MARKS.sub("", page.translate(LIGATURES))
    lines = (" ".join(line.split()) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return [line for line in lines if line]


def drop_furniture(pages: list[list[str]]) -> list[list[str]]:
    """The lines of each page less its running header and footer and a page number alone on a line, at its
    top or bottom (two lines at most at each end).

    >>> pages = [["Report 2024 page %d" % n, "Text %d." % n, str(n)] for n in range(1, 4)]
    >>> drop_furniture(pages)
    [['Text 1.'], ['Text 2.'], ['Text 3.']]
    >>> drop_furniture([["Discussion", "It worked."]] * 3 + [["Text."]] * 10)[0]  # a heading, on 3 pages of 13
    ['Discussion', 'It worked.']
    """
    ends = Counter(_digits_aside(line) for lines in pages if lines for line in {lines[0], lines[-1]})

    def furniture(line: str) -> bool:
        if _PAGE_NUMBER.fullmatch(line):
            return True
        seen = ends[_digits_aside(line)]
        return seen >= (2 if any(c.isdigit() for c in line) else max(RUNNING_PAGES, RUNNING_SHARE * len(pages)))

    out = []
    for lines in pages:
        top = next((n for n in range(min(2, len(lines))) if not furniture(lines[n])), min(2, len(lines)))
        bottom = len(lines)
        while bottom > max(top, len(lines) - 2) and furniture(lines[bottom - 1]):
            bottom -= 1
        out.append(lines[top:bottom])
    return out


def _digits_aside(line: str) -> str:
    return re.sub(r"\d+", "#", line.lower())


def join_lines(lines: list[str]) -> str:
    """The lines of a page as one text: a paragraph's lines joined with a space, a line break kept after a
    line that ends a sentence or is short (see the module's docstring)."""
    if not lines:
        return ""
    usual = sorted(len(line) for line in lines)[len(lines) * 3 // 4]  # most lines of a page are full ones
    pieces = [lines[0]]
    for before, line in zip(lines, lines[1:]):
        ends = _ENDS_SENTENCE.search(before) or len(before) < SHORT_LINE * usual
        breaks = ends and not line[:1].islower()  # a line in lower case goes on with what came before
        pieces += ["\n" if breaks else " ", line]
    return "".join(pieces)


def page_break(before: str, after: str) -> str:
    """What joins the text of a page to the next one's: a space where a sentence goes on over the page break
    (the page ends mid-sentence and the next starts in lower case), else ``PAGE_BREAK``.

    >>> page_break("closed the harbour to", "all shipping."), page_break("It closed.", "Ships waited.")
    (' ', '\\n\\n')
    """
    return " " if not _ENDS_SENTENCE.search(before) and after[:1].islower() else PAGE_BREAK


# A Title that names the file the PDF was made from, not the document: the reader falls back to the file name.
_NOT_A_TITLE = re.compile(
    r"(microsoft (word|powerpoint|excel) - .*|.*\.(docx?|pptx?|xlsx?|rtf|odt|tex|dvi|indd|qxd)|untitled( \d+)?|"
    r"document\d*|slide \d+|title)",
    re.IGNORECASE,
)


def pdf_title(meta: dict) -> str:
    """The Title of a PDF's metadata, or ``""`` when it has none or it names a file, not the document.

    >>> pdf_title({"Title": " Tarn  harbour report "}), pdf_title({"Title": "Microsoft Word - rpt_v3.docx"})
    ('Tarn harbour report', '')
    """
    title = " ".join(meta.get("Title", "").split())
    return "" if _NOT_A_TITLE.fullmatch(title) else title


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
    starts, page 1 first. Of pages that start at one offset (all but the last are empty), the last.

    >>> pages_around([0, 40, 40, 90, 200], 45, 120), pages_around([0, 10, 10, 30], 5, 40)
    (((3, 40), (4, 90)), ((1, 0), (3, 10), (4, 30)))
    """
    first = max(bisect.bisect_right(starts, start) - 1, 0)
    last = min(bisect.bisect_left(starts, end), len(starts))
    found = {starts[n]: n + 1 for n in range(first, last)}  # a later page of one start replaces an empty one
    return tuple((number, at) for at, number in found.items())
