"""Everything the app shows: answers as Markdown for the chat, HTML for the passages and the "Add articles" panel, CSS.

Article text and the user's names and titles are data, never markup: an article containing
``<script>`` or ``![x](http://...)`` must show those characters, not run or load them.
"""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from ..chat import Answer
from ..search import Passage

if TYPE_CHECKING:
    from ..generate import Generated
    from ..indexer import BuildReport
    from .adding import Added

EMPTY_QUESTION = "Please type a question first, for example: “Who traveled to Mexico City?”"
NOTHING = "Choose one or more files, or paste an article's text, then press “Add to the collection”."
# Characters that Markdown (and Gradio's LaTeX handling) would read as syntax anywhere in a line...
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]()#!|~$])")
# ...and those that only matter at the start of one (lists, quotes, headings).
_LINE_START = re.compile(r"^(\d+)([.)])|^([-+=])")
_AUTOLINK = re.compile(r"://|\bwww\.", re.IGNORECASE)


def escape_markdown(text: str) -> str:
    """Text that Markdown shows literally: HTML-escaped, syntax backslash-escaped, one line.

    >>> escape_markdown("<b>![x](y.png)</b>")
    '&lt;b&gt;\\\\!\\\\[x\\\\]\\\\(y.png\\\\)&lt;/b&gt;'
    """
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))
    text = _LINE_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", text)
    # Gradio's Markdown turns bare URLs into links and would swallow a following escape; entities stop that.
    return _AUTOLINK.sub(lambda m: m[0].replace(":", "&#58;").replace(".", "&#46;"), html.escape(text, quote=False))


NO_MATCH = "No article matches the filters beside the passages: widen or clear them, then ask again."


def reply_markdown(answer: Answer) -> str:
    """The assistant's reply: the quoted sentences with [n] citations, then the cited articles.

    Only shown: follow-ups read the answer's ``Turn``, never this text.
    """
    if not answer.passages:
        return "The collection is empty: there is nothing to search yet."
    if not answer.relevant:
        best = answer.passages[0]
        return (
            "I couldn't find anything in the articles that answers this. "
            f"The closest passages are beside the chat, marked as such; the nearest is \\[1\\] "
            f"*{escape_markdown(best.title)}*. Try naming the people, places or events you mean."
        )
    lines = [f"> {escape_markdown(q.text)} \\[{q.citation}\\]" for q in answer.quotes]
    cited: dict[str, list[int]] = {}  # article -> its cited passage numbers, so each article is listed once
    for n in sorted({q.citation for q in answer.quotes}):
        cited.setdefault(answer.passages[n - 1].article_id, []).append(n)
    sources = []
    for numbers in cited.values():
        p = answer.passages[numbers[0] - 1]
        marks = "".join(f"\\[{n}\\]" for n in numbers)
        pages = page_label(answer.passages[n - 1].page for n in numbers)
        sources.append(f"{marks} *{escape_markdown(p.title)}*{_meta(p, pages)}")
    return "\n\n".join(lines) + "\n\n" + "  \n".join(sources)


def generated_reply(answer: Answer, generated: Generated | None, model: str) -> str:
    """The reply with a generated answer above the quotes, so that each of its claims can be checked under it.

    ``generated`` is None while the model has not started, a draft while it streams, then the checked
    answer; one without text (the server failed) leaves the quotes with its one-line notice. The model's
    text is data like an article's: every line escaped, so it can't add links, images or HTML.
    """
    quotes = reply_markdown(answer)
    if generated is None or not (generated.text or generated.done):
        return f"*Writing an answer with {escape_markdown(model)}…*\n\n{quotes}"
    if not generated.text:
        return f"*{escape_markdown(generated.notice)}*\n\n{quotes}"
    head = f"**Answer by {escape_markdown(model)}**, written from the passages: check each \\[n\\] below."
    body = _paragraphs(generated.text) + ("" if generated.done else " …")
    notes = "".join(f"\n\n*{escape_markdown(n)}*" for n in (generated.note, generated.notice) if n)
    return f"{head}\n\n{body}{notes}\n\n---\n\n**Quoted from the articles:**\n\n{quotes}"


def _paragraphs(text: str) -> str:
    """The model's text as Markdown that shows it literally: its paragraphs and lines kept, each line escaped."""
    paragraphs = (p.splitlines() for p in re.split(r"\n\s*\n", text.strip()))
    return "\n\n".join("  \n".join(escape_markdown(line) for line in p if line.strip()) for p in paragraphs)


def _meta(p: Passage, pages: str = "") -> str:
    parts = [escape_markdown(x) for x in (p.source, p.date, pages) if x]
    return " — " + ", ".join(parts) if parts else ""


def page_label(pages) -> str:
    """How a citation names the pages of a PDF's passages: "p. 4", "pp. 2, 4", or "" when none has one.

    >>> page_label([4]), page_label([4, 2, 4]), page_label([None])
    ('p. 4', 'pp. 2, 4', '')
    """
    found = sorted({n for n in pages if n is not None})
    if not found:
        return ""
    return ("p. " if len(found) == 1 else "pp. ") + ", ".join(map(str, found))


def passages_html(answer: Answer | None) -> str:
    """The passages panel: numbered cards with title, source, date, score and the text, answer highlighted;
    each opens its whole article, fetched when opened (``article_link``)."""
    if answer is None or not answer.passages:
        return '<div class="qa-passages qa-empty">Passages that answer your question appear here.</div>'
    note = (
        ""
        if answer.relevant
        else (
            '<p class="qa-note">Not in the articles: none of these answers the question. '
            "They are only the closest passages, shown so that you can judge.</p>"
        )
    )
    closest = not answer.relevant
    cards = "".join(_card(n, p, closest) for n, p in enumerate(answer.passages, start=1))
    return f'<div class="qa-passages">{note}{cards}</div>'


def _card(n: int, p: Passage, closest: bool = False) -> str:
    """One passage's card; ``closest``: it answers nothing, it is only near (marked so; its nearest sentence
    is still highlighted, for the user to judge)."""
    e = html.escape
    meta = " · ".join(e(x) for x in (p.source, p.date, page_label([p.page])) if x)
    kind, mark = (
        ("qa-passage qa-closest", '<span class="qa-closest-tag">closest, not an answer</span> ')
        if closest
        else ("qa-passage", "")
    )
    return (
        f'<div class="{kind}" data-n="{n}"><div class="qa-head"><span class="qa-n">[{n}]</span> {mark}'
        f'<span class="qa-title">{_title(p)}</span></div>'
        f'<div class="qa-meta">{meta}{" · " if meta else ""}score {p.score:.3f} · similarity {p.similarity:.2f}'
        f'</div><div class="qa-text">{_marked(p)}</div>'
        f'<details class="qa-article" data-src="{e(article_link(p))}"><summary>Whole article</summary>'
        '<div class="qa-article-view"></div></details></div>'
    )


def article_link(p: Passage) -> str:
    """Where the panel fetches ``p``'s whole article when it is opened (``ARTICLE_ROUTE``, relative to the
    page): the article's id, the passage's offsets and answering sentence, a digest of its text (so that a
    rebuild that changed the article meanwhile is noticed), and the card's title, source, date and url."""
    query = {"id": p.article_id, "start": p.start, "end": p.end, "digest": text_digest(p.text)}
    if p.highlight_start is not None:
        query |= {"hs": p.highlight_start, "he": p.highlight_end}
    query |= {name: getattr(p, name) for name in ("title", "source", "date", "url") if getattr(p, name)}
    return ARTICLE_ROUTE.lstrip("/") + "?" + urlencode(query)


def text_digest(text: str) -> str:
    """A short digest of a passage's text, which ``article_link`` sends and the article route checks.

    >>> text_digest("One. Two.")
    '39a8fb3492bff2ed'
    """
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def _title(p: Passage) -> str:
    """The title, a link to the article's url when it is a web address (a ``javascript:`` one never is)."""
    title = html.escape(p.title)
    if p.url and re.match(r"https?://", p.url):
        return f'<a href="{html.escape(p.url)}" target="_blank" rel="noopener noreferrer nofollow">{title}</a>'
    return title


def article_html(p: Passage, article: str | None) -> str:
    """The whole article of ``p``, as its card shows it when opened: title (linked), source and date, then
    the text with the passage marked and its answering sentence highlighted (the page scrolls to it, ``HEAD``).
    A note instead when the text is not at hand or no longer holds the passage (a rebuild changed it meanwhile).

    An article over ``MAX_ARTICLE_CHARS`` shows that many characters around the passage, saying what is left out.
    """
    if not article or article[p.start : p.end] != p.text:
        return GONE
    e = html.escape
    lo = max(0, min(p.start - MAX_ARTICLE_CHARS // 2, len(article) - MAX_ARTICLE_CHARS))
    hi = min(len(article), lo + MAX_ARTICLE_CHARS)
    before = f'<p class="qa-note">… {lo:,} characters before</p>' if lo else ""
    after = f'<p class="qa-note">{len(article) - hi:,} characters after …</p>' if hi < len(article) else ""
    meta = " · ".join(e(x) for x in (p.source, p.date) if x)
    return (
        f'<div class="qa-article-head">{_title(p)}{" — " + meta if meta else ""}</div>'
        f'<div class="qa-article-text">{before}{e(article[lo : p.start])}<span class="qa-here">{_marked(p)}</span>'
        f"{e(article[p.end : hi])}{after}</div>"
    )


def note(text: str) -> str:
    """A line in the panel's voice, escaped."""
    return f'<p class="qa-note">{html.escape(text)}</p>'


def _marked(p: Passage) -> str:
    """The passage text with the answering sentence in <mark>, every piece escaped."""
    if p.highlight_start is None:
        return html.escape(p.text)
    a, b = p.highlight_start - p.start, p.highlight_end - p.start
    return (
        html.escape(p.text[:a])
        + '<mark class="qa-answer">'
        + html.escape(p.text[a:b])
        + "</mark>"
        + html.escape(p.text[b:])
    )


def added_html(added: Added) -> str:
    """The "Add articles" panel's status: what was saved, indexed and refused, every name escaped."""
    if not added.saved and not added.refused:
        return _div(f"<p>{html.escape(NOTHING)}</p>")
    parts = []
    if added.saved:
        items = "".join(f"<li>{_quoted(shown)} as {_code(path.name)}</li>" for shown, path in added.saved)
        parts.append(f"<p>Saved in {_code(str(added.folder))}:</p><ul>{items}</ul>")
    if added.report is not None:
        parts.append(f"<p>{_indexed(added.report)}</p>")
        skipped = "".join(f"<li>{_code(Path(s.path).name)}: {html.escape(s.reason)}</li>" for s in added.skipped)
        if skipped:
            parts.append(f'<p class="qa-refused">Saved but not indexed:</p><ul>{skipped}</ul>')
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in added.report.notices)
        if notes:
            parts.append(f"<p>Indexed, but changed on reading:</p><ul>{notes}</ul>")
    if added.error:
        parts.append(
            f'<p class="qa-refused">Saved, but not indexed yet: {html.escape(added.error)} '
            "The next addition or <code>qa build</code> indexes them.</p>"
        )
    if added.refused:
        items = "".join(f"<li>{html.escape(m)}</li>" for m in added.refused)
        parts.append(f'<p class="qa-refused">Not added ({len(added.refused)}):</p><ul>{items}</ul>')
    return _div("".join(parts))


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


# An article opened under a passage shows at most this many characters, around the passage.
MAX_ARTICLE_CHARS = 200_000
# What an opened article shows when the index no longer holds it as it was.
GONE = note("This article is no longer in the index as it was when the passage was found: ask again to see it now.")
# Where the page fetches an opened article (its route is in qa.web.api).
ARTICLE_ROUTE = "/api/article-view"
# An opened article is fetched then (the replies stay small however long the articles are), shown, and its own
# box (not the page) scrolled to the passage's answering sentence. The route answers escaped HTML (article_html).
HEAD = """<script>
document.addEventListener("toggle", async (event) => {
  const details = event.target;
  if (!details.open || !details.matches || !details.matches("details.qa-article[data-src]")) return;
  const view = details.querySelector(".qa-article-view");
  if (!view || view.dataset.state) return;
  view.dataset.state = "loading";
  view.textContent = "Opening the article…";
  try {
    const answer = await fetch(details.dataset.src, {headers: {Accept: "text/html"}});
    if (!answer.ok && answer.status !== 404) throw new Error("the app answered " + answer.status);
    view.innerHTML = await answer.text();
    view.dataset.state = "shown";
  } catch (error) {
    view.textContent = "The article could not be opened (" + error.message + "). Close and open it to try again.";
    delete view.dataset.state;
    return;
  }
  const box = view.querySelector(".qa-article-text");
  const here = box && (box.querySelector(".qa-here mark") || box.querySelector(".qa-here"));
  if (here) box.scrollTop = here.offsetTop - 24;  // the box is positioned: offsets are within it
}, true);
</script>"""
CSS = """
.qa-passages { display: flex; flex-direction: column; gap: 10px; max-height: 70vh; overflow-y: auto; }
.qa-passage { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 12px; }
.qa-head { font-weight: 600; }
.qa-meta { font-size: 0.85em; opacity: 0.75; margin: 2px 0 6px; }
.qa-text { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 16em; overflow-y: auto; }
.qa-answer { background: #fde68a; color: #111; padding: 0 2px; border-radius: 3px; }
.qa-note, .qa-empty { font-style: italic; opacity: 0.8; }
.qa-closest { border-style: dashed; opacity: 0.85; }
.qa-closest-tag { font-size: 0.8em; font-weight: 400; padding: 0 4px; border: 1px solid; border-radius: 4px; }
.qa-article summary { cursor: pointer; font-size: 0.85em; margin-top: 4px; }
.qa-article-head { font-weight: 600; margin: 4px 0; }
.qa-article-text { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 24em; overflow-y: auto;
                   position: relative; border-top: 1px solid var(--border-color-primary); padding-top: 4px; }
.qa-here { background: rgba(253, 230, 138, 0.35); }
.qa-added ul { margin: 2px 0 8px 1.2em; }
.qa-refused { color: var(--error-text-color, #b91c1c); font-weight: 600; }
"""
