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

import math
import os
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import articles
from ..articles import Skipped
from ..embedding import Progress
from ..errors import NoSourcesError, QAError, UploadError, quoted
from ..indexer import BuildReport
from ..text import normalize

MAX_UPLOAD_BYTES = articles.MAX_ARTICLE_BYTES  # one article: what the reader accepts
MAX_JSONL_UPLOAD_BYTES = 100 * 2**20  # many articles in one upload, or a PDF; the reader's own limits are higher
MAX_NAME_CHARS = 100
# Pasted text travels in the page's request (qa.web.limits.MAX_PAGE_BYTES); longer articles are uploaded as files.
MAX_PASTE_CHARS = 400_000
# For the time an addition will take: passages per character of text, and passages embedded per second
# on a 2-core laptop CPU (docs/benchmarks.md, full builds of the Wikinews articles).
CHARS_PER_PASSAGE = 650
PASSAGES_PER_SECOND = 30.0
FORMATS = ".txt, .md, .html, .jsonl and .pdf"
NO_FOLDER = "Nothing was added: the index records no folder to save in. Start the app with --collection DIR."


@dataclass
class Budget:
    """The indexing time one press of the panel may take, shared by all its files and its pasted text.

    ``passages`` is the estimate for what was accepted so far; a line of a .jsonl that is read but
    skipped (junk, a copy) counts as one passage, so millions of them are refused early, not parsed.
    """

    seconds: float | None
    passages: int = 0

    def over(self, passages: int) -> bool:
        """Whether ``passages`` more would take this addition past its limit."""
        return self.seconds is not None and (self.passages + passages) / PASSAGES_PER_SECOND > self.seconds


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
    progress: Progress = None,
) -> Added:
    """Save ``files`` and the pasted ``text`` into ``folder``, then index them into ``library``.

    Each of ``files`` is a path, or a (path, name) pair where name is the user's own file name:
    it names the saved file (made harmless: ``../../etc/passwd`` is saved as ``etc-passwd.txt``) and the messages.
    With ``within``, a path outside that folder is refused: the web client names the paths, and
    only the files it uploaded may be read, never any other file on the server.

    ``folder`` None means the app knows no folder to save in: everything is refused, saying so.
    ``folder`` joins the folders the index was built from; only the files saved now are read and
    indexed (``Library.add``); if another build holds the index, that waits up to ``wait`` seconds for it.

    Refusals (format, size, encoding, empty text, an indexing time estimated over
    ``library.settings.max_add_seconds`` for all of them together: those that would pass it are
    refused, in order) are collected, never raised, so one bad file does not stop the others.
    ``progress`` follows the indexing (as for ``Library.build``). Returns what was saved, refused and indexed.
    """
    try:
        library.update_paths(folder)  # refuses before anything is saved when the index records no folders
    except NoSourcesError as e:
        return Added(Path(folder or "."), refused=[f"Nothing was added: {e}"])
    if folder is None:
        return Added(Path("."), refused=[NO_FOLDER])
    folder = Path(folder)
    budget = Budget(library.settings.max_add_seconds)
    saved, refused = _save_files(folder, files, within, budget)
    if not isinstance(title, str) or not isinstance(text, str):
        refused.append(f"The text was not added: its title and text must be text, not {_kinds(title, text)}.")
    elif len(text) > MAX_PASTE_CHARS:  # the page's text box stops there; a program may send more
        refused.append(
            f"The text was not added: it is {len(text):,} characters; paste at most {MAX_PASTE_CHARS:,}, "
            "or upload it as a file."
        )
    elif title.strip() or text.strip():
        try:
            saved.append((title.strip() or "the pasted text", save_text(folder, title, text, budget)))
        except UploadError as e:
            refused.append(str(e))
    if not saved:
        return Added(folder, saved, refused)
    try:
        report = library.add([path for _, path in saved], folder, wait=wait, progress=progress)
        return Added(folder, saved, refused, report)
    except QAError as e:
        return Added(folder, saved, refused, error=str(e))


def collection_folder(
    library, chosen: str | os.PathLike | None, preferred: str | os.PathLike | None = None
) -> Path | None:
    """Where added articles go: ``chosen``, else ``preferred`` if the index was built from it, else its first folder.

    (app.py prefers its seeds/.) None when the index records no folder (built from single files,
    or before folders were recorded).
    """
    if chosen:
        return Path(chosen)
    folders = [Path(s) for s in library.sources if Path(s).is_dir()]
    if preferred is not None and Path(preferred).resolve() in folders:
        return Path(preferred)
    return folders[0] if folders else None


def save_upload(folder: str | os.PathLike, name: str, data: bytes, budget: Budget | None = None) -> Path:
    """Save uploaded ``data`` as ``folder``/<safe version of ``name``>; returns the path written.

    ``name`` is only a hint: path parts and odd characters are dropped (``../../etc/passwd``
    becomes ``etc-passwd.txt``), a name without a suffix gets ``.txt``, and an existing file is
    never overwritten (``name-2.txt``...) unless it holds the same bytes. The data must be
    something the reader can index (.txt, .md, .html, .jsonl, .pdf; UTF-8 but PDFs; not empty; under the
    size limit; with ``budget``, indexed within what is left of it, see ``estimated_passages``, and
    then charged to it), else UploadError says why and nothing is written.
    """
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    safe = safe_name(name)
    suffix = Path(safe).suffix.lower()
    if suffix not in articles.SUFFIXES:
        raise UploadError(f"{_shown(name)} was not added: qa reads {FORMATS} files, not {suffix}.")
    limit = MAX_JSONL_UPLOAD_BYTES if suffix in (".jsonl", ".pdf") else MAX_UPLOAD_BYTES
    if len(data) > limit and suffix == ".pdf":  # under the reader's limit, maybe: `qa build` reads it
        raise UploadError(
            f"{_shown(name)} was not added: it is over {limit // 2**20} MB, the most the app takes in one file. "
            "Add it with `qa build`."
        )
    if len(data) > limit:
        kind = "jsonl" if suffix == ".jsonl" else "text"
        raise UploadError(f"{_shown(name)} was not added: it {articles.too_big(len(data), kind)}.")
    return _store(Path(folder), safe, bytes(data), name, budget)


def save_text(folder: str | os.PathLike, title: str, text: str, budget: Budget | None = None) -> Path:
    """Save pasted ``text`` as a Markdown article titled ``title`` (or its first line); returns the path.

    Title and text are normalised as the reader normalises files (a lone surrogate or a NUL becomes
    U+FFFD), so a paste is refused only for what it says, never for how the browser encoded it.

    >>> save_text(tmp, "Blinken in Mexico", "Blinken met ...").name  # doctest: +SKIP
    'blinken-in-mexico.md'
    """
    title = " ".join(normalize(title or "").split())
    text = normalize(text or "")
    if not text.strip():
        raise UploadError("The text was not added: it is empty. Paste the article's text.")
    title = title or " ".join(text.strip().splitlines()[0].split())[:80]
    body = "---\n" + yaml.safe_dump({"title": title}, allow_unicode=True, width=10**6) + "---\n" + text.strip() + "\n"
    data = body.encode("utf-8")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"The text {title!r} was not added: it {articles.too_big(len(data))}.")
    return _store(Path(folder), _slug(title) + ".md", data, title, budget)


def estimated_passages(article: articles.Article) -> int:
    """About how many passages ``article`` makes (embedded at about ``PASSAGES_PER_SECOND``).

    >>> estimated_passages(articles.Article("a", "A", "x" * 6500))
    10
    """
    return max(1, math.ceil(len(article.text) / CHARS_PER_PASSAGE))


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


def _save_files(folder: Path, files, within, budget: Budget | None) -> tuple[list[tuple[str, Path]], list[str]]:
    """Save each file into ``folder``: (the user's name, the path written) pairs, and the refusals."""
    saved: list[tuple[str, Path]] = []
    refused: list[str] = []
    for item in files or ():
        path, name = item if isinstance(item, tuple) else (item, Path(item).name)
        if within is not None and not Path(path).resolve().is_relative_to(Path(within).resolve()):
            refused.append(f"{_shown(name)} was not added: it is not a file uploaded through this page.")
            continue
        try:
            saved.append((name, save_upload(folder, name, Path(path).read_bytes(), budget)))
        except UploadError as e:
            refused.append(str(e))
        except OSError as e:
            refused.append(f"{_shown(name)} was not added: it could not be read ({e.strerror or e}).")
    return saved, refused


def _store(folder: Path, safe: str, data: bytes, shown: str, budget: Budget | None = None) -> Path:
    """Write ``data`` under ``folder`` as ``safe`` (or a free variant) atomically, once it reads as articles
    that can be indexed within what is left of ``budget``."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".upload-{uuid.uuid4().hex}{Path(safe).suffix.lower()}"  # a dot file: builds don't read it
    # Mode 0666 less the umask, applied by the kernel: as any file this user saves there.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        passages = _check_readable(tmp, shown, budget)
        stem, suffix = os.path.splitext(safe)
        for n in range(1, 1000):
            target = folder / (safe if n == 1 else f"{stem}-{n}{suffix}")
            if target.is_file() and target.read_bytes() == data:
                return target  # the same upload again: indexed already, nothing to charge
            try:
                _place(tmp, target, data)
                if budget is not None:
                    budget.passages += passages
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


def _check_readable(path: Path, shown: str, budget: Budget | None = None) -> int:
    """The passages ``path``'s articles make, estimated as they are read, lines skipped included; UploadError
    with the reader's reason unless it holds an article, or when they would pass what is left of ``budget``
    (a huge file is refused after the first articles or lines over the limit, not once all are read)."""
    count, passages, skips = 0, 0, 0
    skipped: list[Skipped] = []  # what the reader lists (capped per file); ``skips`` counts every one
    for item in articles.scan([path], skipped):
        if isinstance(item, Skipped):
            skips += 1
        else:
            count, passages = count + 1, passages + estimated_passages(item)
        if budget is not None and budget.over(passages + skips):
            raise UploadError(_too_long(shown, budget, count, skips, skipped))
    if count:
        return passages + skips
    if not skipped:
        raise UploadError(f"{_shown(shown)} was not added: it holds no article.")
    line = skipped[0].path.rpartition(":")[2] if path.suffix == ".jsonl" else ""
    where = f"line {line} " if line.isdigit() else "it "
    raise UploadError(f"{_shown(shown)} was not added: {where}{skipped[0].reason}.")


def _too_long(shown: str, budget: Budget, count: int, skips: int, skipped: list[Skipped]) -> str:
    """Why a file was refused for the time its indexing would take: what of it was read, what came before."""
    read = f"its first {count:,} articles" + (f" and {skips:,} skipped lines" if skips else "")
    alone = " alone" if not budget.passages else ", with what this addition saved before it,"
    why = ""
    if skipped:
        line = skipped[0].path.rpartition(":")[2]
        why = f" The first skipped, line {line}, {skipped[0].reason}." if line.isdigit() else ""
    return (
        f"{_shown(shown)} was not added: indexing it would take longer than the app's limit of "
        f"{_duration(budget.seconds)} (QA_MAX_ADD_SECONDS) here: {read}{alone} would.{why} "
        "Index it with `qa build`, or split it into smaller files."
    )


def _duration(seconds: float) -> str:
    """
    >>> _duration(1), _duration(5), _duration(90), _duration(7200)
    ('1 second', '5 seconds', '2 minutes', '2 hours')
    """
    if seconds < 59.5:
        whole = max(1, round(seconds))
        return f"{whole} second{'s' if whole != 1 else ''}"
    if seconds >= 5400:
        return f"{round(seconds / 3600)} hours"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _kinds(*values: object) -> str:
    return " and ".join(sorted({type(v).__name__ for v in values if not isinstance(v, str)}))


def _slug(title: str) -> str:
    slug = re.sub(r"[^\w]+", "-", unicodedata.normalize("NFC", title).lower()).strip("-_")
    return slug[:80].rstrip("-_") or "pasted-article"


def _shown(name: str) -> str:
    """The user's name for the file as a message quotes it (``qa.errors.quoted``: cut when long)."""
    return quoted(str(name))
