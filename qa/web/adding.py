"""Adding articles from the app: save uploads and pasted text safely in the collection folder, index them.

    >>> added = add(library, "seeds/", ["/tmp/gradio/1f/oil.txt"], "Rail strike", "Drivers stopped.")  # doctest: +SKIP
    >>> [(shown, path.name) for shown, path in added.saved]                                    # doctest: +SKIP
    [('oil.txt', 'oil.txt'), ('Rail strike', 'rail-strike.md')]
    >>> save_upload("seeds/uploads", "../../etc/passwd", b"Hello.").name                       # doctest: +SKIP
    'etc-passwd.txt'

Every refusal is an UploadError whose message names the file and says why; ``add`` collects
them. ``qa.web.render.added_html`` says what happened (it escapes the user's names and titles).
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import articles
from ..articles import Skipped
from ..errors import QAError, UploadError
from ..indexer import BuildReport

MAX_UPLOAD_BYTES = articles.MAX_ARTICLE_BYTES  # one article: what the reader accepts
MAX_JSONL_UPLOAD_BYTES = 100 * 2**20  # many articles in one upload; the reader's own limit is higher
MAX_NAME_CHARS = 100
FORMATS = ".txt, .md, .html and .jsonl"
NO_FOLDER = "Nothing was added: the index records no folder to save in. Start the app with --collection DIR."
SEEDS = Path(__file__).resolve().parents[2] / "seeds"  # the sample articles `python app.py` starts with


@dataclass(frozen=True)
class Added:
    """What one press of the panel's button did.

    ``saved`` pairs the user's name for each file (or the pasted title) with the file written;
    ``refused`` holds one message per file or text that was not saved; ``report`` is the
    index update (None when nothing was saved); ``error`` says why saved files were not indexed.
    """

    folder: Path
    saved: list[tuple[str, Path]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    report: BuildReport | None = None
    error: str = ""

    @property
    def skipped(self) -> list[Skipped]:
        """The build's reasons for skipping files saved now (a copy of an indexed article, say)."""
        if self.report is None:
            return []
        ours = {str(path.resolve()) for _, path in self.saved}
        # "file.jsonl:3" is a line of one.
        return [s for s in self.report.skipped if s.path in ours or s.path.rpartition(":")[0] in ours]


def add(
    library,
    folder: str | os.PathLike | None,
    files: Sequence[str | os.PathLike | tuple[str | os.PathLike, str]] = (),
    title: str = "",
    text: str = "",
    wait: float = 60.0,
    within: str | os.PathLike | None = None,
) -> Added:
    """Save ``files`` and the pasted ``text`` into ``folder``, then index them into ``library``.

    Each of ``files`` is a path, or a (path, name) pair where name is the user's own file name:
    it names the saved file (made harmless: ``../../etc/passwd`` is saved as ``etc-passwd.txt``) and the messages.
    With ``within``, a path outside that folder is refused: the web client names the paths, and
    only the files it uploaded may be read, never any other file on the server.

    ``folder`` None means the app knows no folder to save in: everything is refused, saying so.
    ``folder`` joins the folders the index was built from; if another build holds the index,
    the update waits up to ``wait`` seconds for it.

    Refusals (format, size, encoding, empty text) are collected, never raised, so one bad file
    does not stop the others. Returns what was saved, refused and indexed.
    """
    try:
        paths = library.update_paths(folder)
    except UploadError as e:
        return Added(Path(folder or "."), refused=[f"Nothing was added: {e}"])
    if folder is None:
        return Added(Path("."), refused=[NO_FOLDER])
    folder = Path(folder)
    saved, refused = _save_files(folder, files, within)
    if (title or "").strip() or (text or "").strip():
        try:
            saved.append(((title or "").strip() or "the pasted text", save_text(folder, title, text)))
        except UploadError as e:
            refused.append(str(e))
    if not saved:
        return Added(folder, saved, refused)
    try:
        return Added(folder, saved, refused, library.update(paths, wait=wait))
    except QAError as e:
        return Added(folder, saved, refused, error=str(e))


def collection_folder(library, chosen: str | os.PathLike | None) -> Path | None:
    """Where added articles go: ``chosen``, else seeds/ if the index was built from it, else its first folder.

    None when the index records no folder (built from single files, or before folders were recorded).
    """
    if chosen:
        return Path(chosen)
    folders = [Path(s) for s in library.sources if Path(s).is_dir()]
    if SEEDS.resolve() in folders:
        return SEEDS
    return folders[0] if folders else None


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


def _save_files(folder: Path, files, within) -> tuple[list[tuple[str, Path]], list[str]]:
    """Save each file into ``folder``: (the user's name, the path written) pairs, and the refusals."""
    saved: list[tuple[str, Path]] = []
    refused: list[str] = []
    for item in files or ():
        path, name = item if isinstance(item, tuple) else (item, Path(item).name)
        if within is not None and not Path(path).resolve().is_relative_to(Path(within).resolve()):
            refused.append(f"{_shown(name)} was not added: it is not a file uploaded through this page.")
            continue
        try:
            saved.append((name, save_upload(folder, name, Path(path).read_bytes())))
        except UploadError as e:
            refused.append(str(e))
        except OSError as e:
            refused.append(f"{_shown(name)} was not added: it could not be read ({e.strerror or e}).")
    return saved, refused


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
    skipped: list[Skipped] = []
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


def _shown(name: str) -> str:
    """The user's name for the file, safe to show in a message."""
    return repr(str(name)[:120])
