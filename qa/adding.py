"""The app's "Add articles" panel: save uploaded files and pasted text, index them, say what happened.

    >>> added = add(library, "seeds/", ["/tmp/gradio/1f/oil.txt"], "Rail strike", "Drivers stopped.")  # doctest: +SKIP
    >>> added.html()                                                                            # doctest: +SKIP
    '<div class="qa-added"><p>Saved in <code>seeds</code>:</p><ul><li>“oil.txt” as ...'

Names and titles are the user's own text: ``Added.html`` escapes every one of them.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import QAError, UploadError
from .indexer import BuildReport
from .uploads import save_text, save_upload, update

NOTHING = "Choose one or more files, or paste an article's text, then press “Add to the collection”."


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

    def html(self) -> str:
        """The panel's status message, every name escaped."""
        if not self.saved and not self.refused:
            return _div(f"<p>{html.escape(NOTHING)}</p>")
        parts = []
        if self.saved:
            items = "".join(f"<li>{_quoted(shown)} as {_code(path.name)}</li>" for shown, path in self.saved)
            parts.append(f"<p>Saved in {_code(str(self.folder))}:</p><ul>{items}</ul>")
        if self.report is not None:
            parts.append(f"<p>{_indexed(self.report)}</p>")
            skipped = self._skipped()
            if skipped:
                parts.append(f'<p class="qa-refused">Saved but not indexed:</p><ul>{skipped}</ul>')
        if self.error:
            parts.append(
                f'<p class="qa-refused">Saved, but not indexed yet: {html.escape(self.error)} '
                "The next addition or <code>qa build</code> indexes them.</p>"
            )
        if self.refused:
            items = "".join(f"<li>{html.escape(m)}</li>" for m in self.refused)
            parts.append(f'<p class="qa-refused">Not added ({len(self.refused)}):</p><ul>{items}</ul>')
        return _div("".join(parts))

    def _skipped(self) -> str:
        """The build's reasons for skipping files saved now (a copy of an indexed article, say)."""
        ours = {str(path.resolve()) for _, path in self.saved}
        rows = [
            f"<li>{_code(Path(s.path).name)}: {html.escape(s.reason)}</li>"
            for s in self.report.skipped
            if s.path in ours or s.path.rpartition(":")[0] in ours  # "file.jsonl:3" is a line of one
        ]
        return "".join(rows)


def add(
    library,
    folder: str | os.PathLike | None,
    files: Sequence[str | os.PathLike | tuple[str | os.PathLike, str]] = (),
    title: str = "",
    text: str = "",
    wait: float = 60.0,
    within: str | os.PathLike | None = None,
) -> Added:
    """Save ``files`` and the pasted ``text`` into ``folder``, then index them.

    Each of ``files`` is a path, or a (path, name) pair where name is the user's own file name:
    it names the saved file (made harmless: ``../../etc/passwd`` is saved as ``etc-passwd.txt``) and the messages.
    With ``within``, a path outside that folder is refused: the web client names the paths, and
    only the files it uploaded may be read, never any other file on the server.

    ``folder`` None means the app knows no folder to save in: everything is refused, saying so.

    Refusals (format, size, encoding, empty text) are collected, never raised, so one bad file
    does not stop the others. Returns what was saved, refused and indexed.
    """
    why = _cannot_add(library, folder)
    if why:
        return Added(Path(folder or "."), refused=[why])
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
        return Added(folder, saved, refused, update(library, folder, wait=wait))
    except QAError as e:
        return Added(folder, saved, refused, error=str(e))


def _cannot_add(library, folder) -> str:
    """Why nothing can be added, or ''."""
    # Without the folders the index was built from, an update would index ``folder`` alone and drop the rest.
    if not library.sources:
        return (
            f"Nothing was added: {library.settings.index_dir}/ does not record which folders it was built from. "
            "Rebuild it once with `qa build FOLDER...`, then add articles."
        )
    if folder is None:
        return "Nothing was added: the index records no folder to save in. Start the app with --collection DIR."
    return ""


def _save_files(folder: Path, files, within) -> tuple[list[tuple[str, Path]], list[str]]:
    """Save each file into ``folder``: (the user's name, the path written) pairs, and the refusals."""
    saved: list[tuple[str, Path]] = []
    refused: list[str] = []
    for item in files or ():
        path, name = item if isinstance(item, tuple) else (item, Path(item).name)
        shown = repr(str(name)[:120])
        if within is not None and not Path(path).resolve().is_relative_to(Path(within).resolve()):
            refused.append(f"{shown} was not added: it is not a file uploaded through this page.")
            continue
        try:
            saved.append((name, save_upload(folder, name, Path(path).read_bytes())))
        except UploadError as e:
            refused.append(str(e))
        except OSError as e:
            refused.append(f"{shown} was not added: it could not be read ({e.strerror or e}).")
    return saved, refused


def _indexed(report: BuildReport) -> str:
    if not report.added and not report.changed:
        return "These were already in the collection: nothing new to index."
    n = report.added + report.changed + report.unchanged
    embedded = _count(report.chunks_embedded, "passage")
    return (
        f"Indexed: {report.added} added, {report.changed} changed ({embedded} embedded in {report.seconds:.1f} s). "
        f"The collection now holds {_count(n, 'article')}; ask about them in the chat."
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _quoted(text: str) -> str:
    return f"“{html.escape(' '.join(text.split())[:120])}”"


def _code(text: str) -> str:
    return f"<code>{html.escape(text)}</code>"


def _div(inner: str) -> str:
    return f'<div class="qa-added">{inner}</div>'
