"""Adding articles from the UI: save an upload or pasted text safely into a collection folder, then index it.

    >>> path = save_upload("seeds/uploads", "../../etc/passwd", b"Hello.")  # doctest: +SKIP
    >>> path.name                                                            # doctest: +SKIP
    'etc-passwd.txt'
    >>> report = update(library, "seeds/uploads")                            # doctest: +SKIP

Every refusal is an UploadError whose message names the file and says why.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import unicodedata
from pathlib import Path

import yaml

from . import articles, indexer
from .errors import IndexLockedError, UploadError
from .indexer import BuildReport

MAX_UPLOAD_BYTES = articles.MAX_ARTICLE_BYTES  # one article: what the reader accepts
MAX_JSONL_UPLOAD_BYTES = 100 * 2**20  # many articles in one upload; the reader's own limit is higher
MAX_NAME_CHARS = 100
FORMATS = ".txt, .md, .html and .jsonl"


def save_upload(folder: str | os.PathLike, name: str, data: bytes) -> Path:
    """Save uploaded ``data`` as ``folder``/<safe version of ``name``>; returns the path written.

    ``name`` is only a hint: path parts and odd characters are dropped (``../../etc/passwd``
    becomes ``etc-passwd.txt``), a name without a suffix gets ``.txt``, and an existing file is
    never overwritten (``name-2.txt``...) unless it holds the same bytes. The data must be
    something the reader can index (.txt, .md, .html, .jsonl; UTF-8; not empty; under the
    size limit), else UploadError says why and nothing is written.
    """
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    safe = safe_name(name)
    suffix = Path(safe).suffix.lower()
    if suffix not in articles.SUFFIXES:
        raise UploadError(f"{_shown(name)} was not added: qa reads {FORMATS} files, not {suffix}.")
    limit = MAX_JSONL_UPLOAD_BYTES if suffix == ".jsonl" else MAX_UPLOAD_BYTES
    if len(data) > limit:
        kind = "jsonl" if suffix == ".jsonl" else "text"
        raise UploadError(f"{_shown(name)} was not added: it {articles.too_big(len(data), kind)}.")
    return _store(Path(folder), safe, bytes(data), name)


def save_text(folder: str | os.PathLike, title: str, text: str) -> Path:
    """Save pasted ``text`` as a Markdown article titled ``title`` (or its first line); returns the path.

    >>> save_text(tmp, "Blinken in Mexico", "Blinken met ...").name  # doctest: +SKIP
    'blinken-in-mexico.md'
    """
    title = " ".join((title or "").split())
    if not text or not text.strip():
        raise UploadError("The text was not added: it is empty. Paste the article's text.")
    title = title or " ".join(text.strip().splitlines()[0].split())[:80]
    body = "---\n" + yaml.safe_dump({"title": title}, allow_unicode=True, width=10**6) + "---\n" + text.strip() + "\n"
    data = body.encode("utf-8", "surrogatepass")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"The text {title!r} was not added: it {articles.too_big(len(data))}.")
    return _store(Path(folder), _slug(title) + ".md", data, title)


def update(library, folder: str | os.PathLike | None = None, wait: float = 60.0) -> BuildReport:
    """Index what changed in ``library``'s collection (plus ``folder``) and make ``library`` serve it.

    The collection is the folders the index was built from (recorded in its manifest), chunked
    as the index was. If another build holds the index, waits up to ``wait`` seconds for it.
    """
    manifest = library.manifest
    paths = list(manifest.get("sources", []))
    # Without recorded folders, building from ``folder`` alone would drop every other article.
    unknown_sources = not paths and manifest.get("articles", 0) > 0
    if folder is not None and not any(_inside(Path(folder), Path(p)) for p in paths):
        paths.append(str(Path(folder).resolve()))
    if not paths or unknown_sources:
        raise UploadError(
            f"{library.settings.index_dir}/ does not record which folders it was built from. "
            "Rebuild it once with `qa build FOLDER...`, then add articles."
        )
    collection = indexer.collect(paths, library.settings.index_dir)
    # The index's own chunking, not this process's defaults: adding one article must never
    # turn into re-embedding the collection because the app was started with other settings.
    settings = library.settings.with_(
        chunk_tokens=manifest["chunk_tokens"], overlap_sentences=manifest.get("overlap_sentences")
    )
    deadline = time.monotonic() + wait
    while True:
        try:
            return library.update(collection, settings)
        except IndexLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def safe_name(name: str) -> str:
    """A harmless file name from an uploaded name: no folders, no leading dots, no odd characters.

    >>> safe_name("../../etc/passwd")
    'etc-passwd.txt'
    >>> safe_name("C:\\\\Users\\\\me\\\\Café report.MD")
    'Users-me-Café-report.MD'
    """
    parts = [p for p in re.split(r"[\\/]+", unicodedata.normalize("NFC", str(name))) if p not in ("", ".", "..")]
    parts = [p for p in parts if not re.fullmatch(r"[A-Za-z]:", p)]  # a Windows drive
    base = re.sub(r"[^\w.\-]+", "-", "-".join(parts))
    base = re.sub(r"-*\.[-.]*", ".", re.sub(r"-+", "-", base)).strip("-._")
    stem, suffix = os.path.splitext(base)
    if not suffix or not re.fullmatch(r"\.\w{1,10}", suffix):
        stem, suffix = base, ".txt"
    stem = stem[: MAX_NAME_CHARS - len(suffix)].rstrip("-._") or "upload"
    return stem + suffix


def _store(folder: Path, safe: str, data: bytes, shown: str) -> Path:
    """Write ``data`` under ``folder`` as ``safe`` (or a free variant) atomically, once it reads as articles."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", suffix=Path(safe).suffix.lower(), dir=folder)
    tmp = Path(tmp_name)  # a dot file: a build running meanwhile does not read it
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _check_readable(tmp, shown)
        stem, suffix = os.path.splitext(safe)
        for n in range(1, 1000):
            target = folder / (safe if n == 1 else f"{stem}-{n}{suffix}")
            if target.is_file() and target.read_bytes() == data:
                return target  # the same upload again
            try:
                _place(tmp, target, data)
                return target
            except FileExistsError:
                continue
        raise UploadError(f"{_shown(shown)} was not added: {folder} already holds 999 files named like it.")
    finally:
        tmp.unlink(missing_ok=True)


def _place(tmp: Path, target: Path, data: bytes) -> None:
    """Put ``tmp`` at ``target`` whole, or FileExistsError; never replaces a file (unlike rename)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system: exclusive create, then write
        with open(target, "xb") as f:
            f.write(data)


def _check_readable(path: Path, shown: str) -> None:
    """UploadError with the reader's reason unless ``path`` yields at least one article."""
    skipped: list[articles.Skipped] = []
    if list(articles.read([path], skipped)):
        return
    if not skipped:
        raise UploadError(f"{_shown(shown)} was not added: it holds no article.")
    line = skipped[0].path.rpartition(":")[2] if path.suffix == ".jsonl" else ""
    where = f"line {line} " if line.isdigit() else "it "
    raise UploadError(f"{_shown(shown)} was not added: {where}{skipped[0].reason}.")


def _slug(title: str) -> str:
    slug = re.sub(r"[^\w]+", "-", unicodedata.normalize("NFC", title).lower()).strip("-_")
    return slug[:80].rstrip("-_") or "pasted-article"


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _shown(name: str) -> str:
    """The user's name for the file, safe to show in a message."""
    return repr(str(name)[:120])
