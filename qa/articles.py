"""Files to Articles: read .txt, .md, .html, .jsonl and .pdf, clean the text, skip what can't be read."""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from . import pdf
from .errors import ArticleError
from .text import normalize

log = logging.getLogger(__name__)

SUFFIXES = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".jsonl": "jsonl",
    ".pdf": "pdf",
}
# One article bigger than this is not an article but a dump or a log: embedding 50 MB would take
# a CPU a quarter of an hour and its hits would be useless, so it is skipped with a warning.
# (War and Peace is 3.2 MB.) A .jsonl file holds many articles, each under the article limit.
MAX_ARTICLE_BYTES = 10 * 2**20
MAX_JSONL_BYTES = 512 * 2**20
# A PDF's file is mostly pictures and fonts: its text, extracted, is held to the article limit.
MAX_PDF_BYTES = 256 * 2**20
# A title, source or date longer than this is not one (a paragraph, a dump): it is cut, with a warning.
MAX_FIELD_CHARS = 300
MAX_URL_CHARS = 2048
# Front matter is a few lines of metadata; more is a mistake or an attack on the YAML parser.
MAX_FRONT_MATTER_BYTES = 64 * 2**10
# Whole lines that are page furniture, not content (matched case-insensitively).
BOILERPLATE = re.compile(
    r"^\s*(be the first to comment|\d+\s+comments?|comments?|leave a (comment|reply)|"
    r"share( this( article| story)?)?( on (facebook|twitter|x))?|advertisement|"
    r"(sign up|subscribe)( (to|for) our newsletter| now)?|click here to subscribe|"
    r"read more|related( articles| stories)?|follow us on .{1,40}|all rights reserved\.?|"
    r"copyright ©?.{0,60}|print|email)\s*[.!:]?\s*$",
    re.IGNORECASE,
)
# Inline noise: embedded-tweet picture links.
INLINE_NOISE = re.compile(r"\s*\bpic\.twitter\.com/\w+")


@dataclass(frozen=True)
class Article:
    """One article: cleaned text plus what we know about where it came from.

    Every field is encodable text (``text.normalize``): ``read`` makes it so. ``pages``: where each
    page of a PDF starts in ``text`` (page 1 first); empty for other formats.
    """

    id: str
    title: str
    text: str
    source: str = ""
    date: str = ""
    url: str = ""
    path: str = ""
    pages: tuple[int, ...] = ()

    @property
    def hash(self) -> str:
        """Content hash over everything that ends up in the index (pages only when there are some: the
        hashes of other articles are those that qa gave them before it read PDFs)."""
        h = hashlib.sha256()
        for part in (self.title, self.source, self.date, self.url, self.text):
            h.update(part.encode("utf-8", "surrogatepass"))  # an Article made in memory (qa.eval) may hold one
            h.update(b"\x00")
        if self.pages:
            h.update(json.dumps(self.pages).encode())
        return h.hexdigest()[:32]


@dataclass(frozen=True)
class Skipped:
    """A file or record that was not indexed, and why."""

    path: str
    reason: str


def clean(text: str) -> str:
    """Normalise line ends and spaces, drop boilerplate lines and inline noise.

    >>> clean("Hello  world.\\r\\nBe the first to comment\\n")
    'Hello world.'
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = []
    for line in text.split("\n"):
        line = INLINE_NOISE.sub("", line)
        line = re.sub(r"[ \t\u00a0]+", " ", line).strip()
        if BOILERPLATE.match(line):
            continue
        lines.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def read(
    paths: Iterable[str | os.PathLike],
    skipped: list[Skipped] | None = None,
    only: Iterable[str | os.PathLike] | None = None,
    notices: list[str] | None = None,
) -> Iterator[Article]:
    """Yield the articles under ``paths`` (files or folders, read recursively).

    Unreadable files and records are logged as warnings and appended to ``skipped``;
    identical texts are yielded once. What was read but changed (a title too long to be one, cut)
    is logged and appended to ``notices``. Of one file, the first ``MAX_LISTED`` skips and notices
    are listed one by one, the rest in one line: a .jsonl of a million junk lines is one entry, not a million.

    ``only``: read just these files, with the ids, order and skipping that a read of all of
    ``paths`` gives them (``articles/uploads/oil.txt``, not ``oil.txt``); a file that such a
    read would not reach (outside ``paths``, in a hidden folder, not a known suffix) is not read.
    """
    return (item for _, item in located(paths, skipped, only, notices) if isinstance(item, Article))


def scan(
    paths: Iterable[str | os.PathLike],
    skipped: list[Skipped] | None = None,
    only: Iterable[str | os.PathLike] | None = None,
    notices: list[str] | None = None,
) -> Iterator[Article | Skipped]:
    """``read``, yielding also every file and record left out, as it is met, listed in ``skipped`` or not:
    a caller can follow (and stop) a read that gives nothing but skips.

    >>> [type(x).__name__ for x in scan(["feed.jsonl"])]  # doctest: +SKIP
    ['Article', 'Skipped', 'Article']
    """
    return (item for _, item in located(paths, skipped, only, notices))


def located(
    paths: Iterable[str | os.PathLike],
    skipped: list[Skipped] | None = None,
    only: Iterable[str | os.PathLike] | None = None,
    notices: list[str] | None = None,
) -> Iterator[tuple[Path, Article | Skipped]]:
    """``scan``, each item with the file it comes from, as ``only`` takes it: an article's ``path``
    is text, which a file name that is not UTF-8 is not."""
    skipped = [] if skipped is None else skipped
    notices = [] if notices is None else notices
    seen: dict[str, str] = {}  # id or text hash -> where it was first seen
    only = None if only is None else [Path(f) for f in only]
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise ArticleError(f"{root} does not exist. Give a folder or file of articles.")
        for path in _files(root, skipped) if only is None else _files_among(root, only):
            told = _Told(str(path), skipped, notices)
            for item in _read_file(path, _article_id(root, path)):
                if isinstance(item, Article):
                    item, cuts = _capped(item)
                    for cut in cuts:
                        told.notice(cut)
                    item = _first_copy(item, seen)
                if isinstance(item, Skipped):
                    told.skip(item)
                yield path, item
            told.close()


MAX_LISTED = 20


class _Told:
    """One file's skips and notices: the first ``MAX_LISTED`` of each listed and logged, then one line for the rest."""

    def __init__(self, path: str, skipped: list[Skipped], notices: list[str]) -> None:
        self.path, self.skipped, self.notices = path, skipped, notices
        self.skips, self.cuts = 0, 0
        self.more_reasons: list[str] = []

    def skip(self, item: Skipped) -> None:
        self.skips += 1
        if self.skips <= MAX_LISTED:
            log.warning("skipped %s: %s", item.path, item.reason)
            self.skipped.append(item)
        elif len(self.more_reasons) < 3 and item.reason not in self.more_reasons:
            self.more_reasons.append(item.reason)

    def notice(self, text: str) -> None:
        self.cuts += 1
        if self.cuts <= MAX_LISTED:
            log.warning("%s", text)
            self.notices.append(text)

    def close(self) -> None:
        if self.skips > MAX_LISTED:
            reasons = "; ".join(self.more_reasons)
            more = Skipped(self.path, f"{self.skips - MAX_LISTED:,} more lines skipped too, not listed ({reasons})")
            log.warning("skipped %s: %s", more.path, more.reason)
            self.skipped.append(more)
        if self.cuts > MAX_LISTED:
            text = f"{self.path}: {self.cuts - MAX_LISTED:,} more fields cut too, not listed"
            log.warning("%s", text)
            self.notices.append(text)


def _first_copy(article: Article, seen: dict[str, str]) -> Article | Skipped:
    """The article, or Skipped when its id or its text was seen before (recording both)."""
    text_key = "sha256:" + hashlib.sha256(article.text.encode("utf-8")).hexdigest()
    if article.id in seen:
        # Two records with one id would overwrite each other and look "changed" on every build.
        return Skipped(article.path, f"has the same id as {seen[article.id]}; only the first is indexed")
    if text_key in seen:
        return Skipped(article.path, f"same text as {seen[text_key]}, indexed once")
    seen[article.id], seen[text_key] = article.path, article.id
    return article


def _files(root: Path, skipped: list[Skipped]) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    visited: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in visited:  # a symlink loop: walk each real folder once
            dirnames[:] = []
            skipped.append(Skipped(dirpath, "folder already visited (symlink loop)"))
            log.warning("skipped %s: folder already visited (symlink loop)", dirpath)
            continue
        visited.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in SUFFIXES:
                continue
            yield Path(dirpath) / name


def _files_among(root: Path, files: list[Path]) -> list[Path]:
    """Those of ``files`` that ``_files(root)`` would yield, as it would name them, in its order."""
    if root.is_file():
        return [root] if any(_same_file(f, root) for f in files) else []
    found = {}
    base = root.resolve()
    for f in files:
        try:  # the folder resolved, not the file: a file that is a link is read where it is, as the walk does
            rel = (f.absolute().parent.resolve() / f.name).relative_to(base)
        except ValueError:
            continue
        if any(part.startswith(".") for part in rel.parts) or rel.suffix.lower() not in SUFFIXES:
            continue
        found[rel] = root / rel
    # os.walk's order with sorted names: a folder's files, then its sub-folders, each in name order.
    return [found[rel] for rel in sorted(found, key=lambda r: [(1, d) for d in r.parts[:-1]] + [(0, r.name)])]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _article_id(root: Path, path: Path) -> str:
    """Stable id: the path from the given root's own folder name, so cwd doesn't matter."""
    if root.is_file():
        return path.name
    rel = path.relative_to(root).as_posix()
    return f"{root.resolve().name}/{rel}" if root.resolve().name else rel


def _read_file(path: Path, article_id: str) -> Iterator[Article | Skipped]:
    kind = SUFFIXES.get(path.suffix.lower(), "text")
    try:
        size = path.stat().st_size
        if size > {"jsonl": MAX_JSONL_BYTES, "pdf": MAX_PDF_BYTES}.get(kind, MAX_ARTICLE_BYTES):
            yield Skipped(str(path), too_big(size, kind))
            return
        data = path.read_bytes()
    except OSError as e:
        yield Skipped(str(path), f"can't be read ({e.strerror or e})")
        return
    if kind == "pdf":
        yield _from_pdf(path, article_id, data)
        return
    if b"\x00" in data[:8192]:
        yield Skipped(str(path), "looks binary, not text")
        return
    if kind == "jsonl":  # read a line at a time: a whole decoded copy of 100 MB of lines is 100-400 MB more
        yield from _read_jsonl(path, article_id, data)
        return
    try:
        raw = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        yield Skipped(str(path), _not_utf8(e.start))
        return
    del data
    raw = normalize(raw)
    reader = {"text": _from_text, "markdown": _from_markdown, "html": _from_html}[kind]
    try:
        article = reader(path, article_id, raw)
    except ArticleError as e:
        yield Skipped(str(path), str(e))
        return
    if not article.text:
        yield Skipped(str(path), "has no text")
        return
    yield article


def _from_text(path: Path, article_id: str, raw: str) -> Article:
    return Article(id=article_id, title=_title_from_name(path), text=clean(raw), path=str(path))


def _from_pdf(path: Path, article_id: str, data: bytes) -> Article | Skipped:
    """A PDF's pages, one after the other, each page's start kept; its metadata's title and date."""
    if not data.strip():
        return Skipped(str(path), "is an empty file")
    try:
        found = pdf.extract(data)
    except ArticleError as e:
        return Skipped(str(path), str(e))
    parts, pages, at = [], [], 0
    for page in found.pages:
        page = clean(normalize(page))
        if page and parts:
            parts.append(pdf.page_break(parts[-1], page))
            at += len(parts[-1])
        pages.append(at)
        if page:
            parts.append(page)
            at += len(page)
    text = "".join(parts)
    if not text:
        return Skipped(
            str(path),
            f"has no text layer in its {len(pages)} page(s) (a scanned or image-only PDF?); "
            "run OCR on it (e.g. ocrmypdf) and add the result",
        )
    if len(text.encode("utf-8")) > MAX_ARTICLE_BYTES:
        return Skipped(str(path), too_big(len(text.encode("utf-8")), "pdf text"))
    pages = [min(start, len(text)) for start in pages]  # trailing empty pages start where the text ends
    title = _str(found.title) or _title_from_name(path)
    return Article(article_id, title, text, date=found.date, path=str(path), pages=tuple(pages))


FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(\n|\Z)", re.DOTALL)


def _from_markdown(path: Path, article_id: str, raw: str) -> Article:
    """Markdown with optional YAML front matter (title, source, date, url)."""
    meta: dict = {}
    m = FRONT_MATTER.match(raw.lstrip("\ufeff"))
    if m:
        if len(m.group(1).encode("utf-8")) > MAX_FRONT_MATTER_BYTES:
            raise ArticleError(
                f"has front matter over {MAX_FRONT_MATTER_BYTES // 1024} KB; keep it to title, source, date, url"
            )
        try:
            meta = yaml.load(m.group(1), Loader=_FrontMatterLoader) or {}
        except yaml.YAMLError as e:
            raise ArticleError(f"has invalid front matter: {str(e).splitlines()[0]}") from None
        if not isinstance(meta, dict):
            raise ArticleError("has front matter that is not a key: value block")
        raw = raw[m.end() :]
    text = clean(raw)
    title = _str(meta.get("title"))
    if not title:
        heading = re.match(r"#\s+(.+)", text)
        title = heading.group(1).strip() if heading else _title_from_name(path)
    return Article(
        id=article_id,
        title=title,
        text=text,
        source=_str(meta.get("source")),
        date=_str(meta.get("date")),
        url=_str(meta.get("url")),
        path=str(path),
    )


class _FrontMatterLoader(yaml.SafeLoader):
    """Safe YAML without aliases: nested ``*name`` references expand a few hundred bytes into gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "uses a YAML alias (*name), which qa does not read; write the value out", mark
            )
        return super().compose_node(parent, index)


def _from_html(path: Path, article_id: str, raw: str) -> Article:
    """Main text and title via trafilatura; scripts, styles and navigation are dropped."""
    import trafilatura

    doc = trafilatura.bare_extraction(
        raw, with_metadata=True, favor_recall=True, include_comments=False, include_tables=True
    )
    text = clean(doc.text or "") if doc else ""
    if not text:
        text = clean(_html_text_fallback(raw))
    title = (doc.title if doc else "") or _title_from_name(path)
    return Article(
        id=article_id,
        title=title,
        text=text,
        source=(doc.sitename or "") if doc else "",
        date=(doc.date or "") if doc else "",
        url=(doc.url or "") if doc else "",
        path=str(path),
    )


def _html_text_fallback(raw: str) -> str:
    """Visible text of short pages that trafilatura declines to extract."""
    import lxml.html

    try:
        tree = lxml.html.fromstring(raw)
    except Exception:  # lxml raises several types on junk input
        return ""
    for bad in tree.xpath("//script|//style|//noscript|//nav|//header|//footer|//template"):
        bad.drop_tree()
    body = tree.find("body")
    return (body if body is not None else tree).text_content()


def _read_jsonl(path: Path, file_id: str, data: bytes) -> Iterator[Article | Skipped]:
    """One article per line: ``text`` and optional ``title``, ``id``, ``source``, ``date``, ``url``.

    Lazily, a line at a time, each decoded and normalised alone; a file that isn't UTF-8 anywhere is skipped whole.
    """
    bad = _utf8_error(data)
    if bad is not None:
        yield Skipped(str(path), _not_utf8(bad))
        return
    for n, raw in _lines(data):
        line = normalize(raw.decode("utf-8-sig" if n == 1 else "utf-8"))
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            yield Skipped(where, f"is not valid JSON ({e.msg})")
            continue
        except RecursionError:
            yield Skipped(where, "is JSON nested too deeply to be an article")
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
            yield Skipped(where, 'has no "text" string field')
            continue
        if len(rec["text"]) > MAX_ARTICLE_BYTES:
            # "replace": a JSON escape can still make a lone surrogate here, normalised only below
            yield Skipped(where, too_big(len(rec["text"].encode("utf-8", "replace")), "text"))
            continue
        text = clean(normalize(rec["text"]))
        if not text:
            yield Skipped(where, "has no text")
            continue
        rid = _str(rec.get("id")) or str(n)
        yield Article(
            id=f"{file_id}#{rid}",
            title=_str(rec.get("title")) or f"{path.stem} {rid}",
            text=text,
            source=_str(rec.get("source")),
            date=_str(rec.get("date")),
            url=_str(rec.get("url")),
            path=where,
        )


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    r"""The lines of ``data`` and their numbers, lazily, as text in universal newlines mode has them:
    split at \n, \r\n and \r only (never at \u2028 or \x1c, as str.splitlines would), each ending in \n.

    >>> list(_lines(b"a\r\nb\rc\n\nd"))
    [(1, b'a\n'), (2, b'b\n'), (3, b'c\n'), (4, b'\n'), (5, b'd')]
    """
    n = 0
    for chunk in io.BytesIO(data):  # split at b"\n" only, sharing data's bytes
        if b"\r" not in chunk:
            n += 1
            yield n, chunk
            continue
        ended = chunk.endswith(b"\n")
        *lines, last = chunk.removesuffix(b"\n").removesuffix(b"\r" if ended else b"").split(b"\r")
        lines = [line + b"\n" for line in lines]
        if ended or last:
            lines.append(last + b"\n" if ended else last)
        for line in lines:
            n += 1
            yield n, line


def _utf8_error(data: bytes) -> int | None:
    """Where ``data`` (after a byte order mark) stops being UTF-8, or None; checked a megabyte at a time."""
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    decoder = codecs.getincrementaldecoder("utf-8")()
    view, step = memoryview(data), 2**20
    for start in range(bom, len(data) + 1, step):  # + 1: an empty rest still gets the final call
        pending = len(decoder.getstate()[0])  # bytes of a character cut by the previous step
        try:
            decoder.decode(view[start : start + step], final=start + step >= len(data))
        except UnicodeDecodeError as e:
            return start - pending + e.start - bom
    return None


def _not_utf8(byte: int) -> str:
    return f"is not valid UTF-8 (byte {byte}); convert it to UTF-8"


def too_big(size: int, kind: str = "text") -> str:
    """Why a file or record of ``size`` bytes is refused, and what to do instead.

    >>> too_big(50 * 2**20).split(". ")[0]
    'is 50 MB; one article can be at most 10 MB'
    """
    mb = f"{math.ceil(size / 2**20 * 10) / 10:.1f}".removesuffix(".0")  # rounded up: never "10 MB, over 10 MB"
    if kind == "jsonl":
        return f"is {mb} MB; a .jsonl file can be at most {MAX_JSONL_BYTES // 2**20} MB. Split it into several files"
    if kind == "pdf":
        return f"is {mb} MB; a PDF can be at most {MAX_PDF_BYTES // 2**20} MB. Split it into several PDFs"
    if kind == "pdf text":
        limit = MAX_ARTICLE_BYTES // 2**20
        return f"has {mb} MB of text; one article can be at most {limit} MB. Split it into several PDFs"
    return (
        f"is {mb} MB; one article can be at most {MAX_ARTICLE_BYTES // 2**20} MB. "
        "Split it into several files, or one JSON line per article in a .jsonl file"
    )


def _title_from_name(path: Path) -> str:
    return re.sub(r"[_-]+", " ", path.stem).strip() or path.name


def _str(value: object) -> str:
    return "" if value is None else normalize(str(value)).strip()


def _printable(text: str) -> str:
    """``text`` with the bytes of a non-UTF-8 file name as \\x escapes, and nothing unencodable.

    >>> _printable("caf\\udce9.txt")
    'caf\\\\xe9.txt'
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return normalize(text)


def _capped(article: Article) -> tuple[Article, list[str]]:
    """``article`` with a title, source, date or url that is too long to be one cut, and what was cut;
    an id, path and title that can be stored (a file name that isn't UTF-8 is shown with \\x escapes)."""
    limits = {"title": MAX_FIELD_CHARS, "source": MAX_FIELD_CHARS, "date": MAX_FIELD_CHARS, "url": MAX_URL_CHARS}
    article = replace(
        article, id=_printable(article.id), path=_printable(article.path), title=_printable(article.title)
    )
    cut, told = {}, []
    for name, limit in limits.items():
        value = getattr(article, name)
        if len(value) > limit:
            told.append(f"{article.path or article.id}: its {name} is {len(value)} characters; cut to {limit}")
            cut[name] = value[:limit].rstrip() + "…"
    return (replace(article, **cut) if cut else article), told
