"""Real PDF files for the tests, written byte by byte: pages of text, pages with only a picture, encrypted, cut short.

A hand-written PDF is a PDF like any other to a reader (PDFium reads these as it reads a printed one),
and writing it here keeps the tests free of a PDF-making library: what each page holds is known exactly.
"""

from __future__ import annotations

import io
import zlib


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _content(lines: list[str]) -> bytes:
    """A page's content stream: each line of text set in Helvetica 11 pt, one under the other."""
    ops = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
    for line in lines:
        ops += [f"({_escape(line)}) Tj", "T*"]
    ops.append("ET")
    return "\n".join(ops).encode("latin-1")


def _picture() -> bytes:
    """A page's content stream that draws a grey 8x8 picture over the page, and no text."""
    return b"q 468 0 0 648 72 72 cm /Im1 Do Q"


def write(pages: list[list[str] | None], title: str = "", date: str = "") -> bytes:
    """A PDF of ``pages``: each a list of lines of text, or None for a page that is only a picture (a scan).

    ``title``, ``date`` ("D:20240315...") go into its Info dictionary when given.
    """
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in once the pages' object is known
    tree = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    pixels = zlib.compress(bytes([128]) * 64)
    image = add(
        b"<< /Type /XObject /Subtype /Image /Width 8 /Height 8 /ColorSpace /DeviceGray /BitsPerComponent 8 "
        b"/Filter /FlateDecode /Length %d >>\nstream\n" % len(pixels) + pixels + b"\nendstream"
    )
    kids = []
    for lines in pages:
        stream = _picture() if lines is None else _content(lines)
        contents = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                b"/Resources << /Font << /F1 %d 0 R >> /XObject << /Im1 %d 0 R >> >> >>" % (tree, contents, font, image)
            )
        )
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % tree
    objects[tree - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    info = []
    if title:
        info.append(b"/Title (" + _escape(title).encode("latin-1") + b")")
    if date:
        info.append(b"/CreationDate (" + date.encode("ascii") + b")")
    info_ref = add(b"<< " + b" ".join(info) + b" >>") if info else None
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    trailer = b"<< /Size %d /Root %d 0 R" % (len(objects) + 1, catalog)
    trailer += b" /Info %d 0 R >>" % info_ref if info_ref else b" >>"
    out.write(b"trailer\n" + trailer + b"\nstartxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def encrypted(data: bytes, password: str = "secret") -> bytes:
    """``data`` encrypted with a user password, as a PDF saved with "require a password to open" (RC4:
    pypdf writes it without the cryptography package)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
