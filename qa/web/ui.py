"""The Gradio page: the chat, the passages panel and the "Add articles" panel, and their handlers.

The conversation is kept twice per browser session: as the Chatbot's messages (what is shown)
and as a ``gr.State`` of ``qa.chat.Turn`` (what follow-ups read). Programs get the same through
the ``/chat`` endpoint: gradio_client keeps the session, and so the turns, between its calls.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import gradio as gr
from gradio import utils as gr_utils

from .. import chat, filters
from ..articles import MAX_FIELD_CHARS
from ..chat import Turn
from ..errors import QAError
from ..search import MAX_QUESTION_CHARS, check_k, check_question
from . import adding, render
from .writing import Writer

# The source filter lists at most this many (a source beyond them is still accepted through the API).
MAX_SOURCE_CHOICES = 1000
EXAMPLES = [
    "Who traveled to Mexico City?",
    "What did he say about the cycle of crime?",
    "What is the new security framework meant to replace?",
]


def header(library) -> str:
    """The page's title line, with the collection's size."""
    info = library.info()
    return (
        f"## Ask the articles\nChat with {info.articles} articles ({info.chunks} passages). "
        "Answers quote the articles, with numbered citations; follow-up questions are read in the "
        "context of the conversation."
    )


def respond(
    library, message, history, k, turns, source=None, after="", before="", article=""
) -> tuple[list[dict], str, str, tuple[Turn, ...], chat.Answer | None]:
    """One turn of the chat: ``message`` answered in the context of the earlier ``turns``, from the
    articles that the filters (``source``, ``after``, ``before``, ``article``: see ``qa.filters``) let through.

    Returns the chat ``history`` with the question and its reply appended, the passages panel,
    "" for the question box, the turns with this one appended, and the ``chat.Answer`` (None for
    an empty question), for the model to answer in words when one is set (qa.web.writing).
    """
    history = list(history or [])
    turns = continued(turns, history)
    try:
        text = check_question(chat.message_text(message))
    except QAError:
        return history + [{"role": "assistant", "content": render.EMPTY_QUESTION}], gr.skip(), "", turns, None
    try:
        where = filters.check(source or None, after, before, article)
        answer = chat.ask(library, text, turns, k=check_k(k), where=where)
    except QAError as e:
        raise gr.Error(str(e)) from None
    filtered_out = bool(where) and not answer.passages  # not an empty collection: the filters let nothing through
    history += [
        {"role": "user", "content": render.escape_markdown(answer.question)},  # as the chat searched it
        {"role": "assistant", "content": render.NO_MATCH if filtered_out else render.reply_markdown(answer)},
    ]
    return history, render.passages_html(answer), "", (*turns, answer.turn), answer


def source_choices(library) -> list[str]:
    """The sources offered by the filter: those the indexed articles name (the first ``MAX_SOURCE_CHOICES``)."""
    return library.article_sources()[:MAX_SOURCE_CHOICES]


def continued(turns, history) -> tuple[Turn, ...]:
    """The session's ``turns`` that the chat ``history`` sent with a question still holds.

    The page sends the chat it shows: all of them. A program may send a shorter one ([] starts
    a new conversation): only that many of the first turns go on. A chat with more questions than
    the session answered (one from another session) starts over.
    """
    turns = tuple(turns or ())
    asked = sum(1 for message in history if _role(message) == "user")
    return turns[:asked] if asked <= len(turns) else ()


def _forget(paths) -> None:
    """Delete Gradio's copies of uploaded files once they are saved in the collection (or refused)."""
    for path in paths:
        path = Path(path)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # Gradio keeps each upload in a folder of its own
            path.parent.rmdir()


def _role(message) -> str:
    if isinstance(message, dict):
        return message.get("role", "")
    return getattr(message, "role", "")  # gradio's ChatMessage and the like


def build_ui(library, concurrency: int, collection: str | None = None) -> gr.Blocks:
    """The Blocks app: chat on the left with the "Add articles" panel under it, the passages panel on the right."""

    writer = Writer.of(library.settings)  # None unless QA_LLM_URL names a model server

    def answer(message, history, k, turns, source, after, before, article, request: gr.Request):
        *shown, answered = respond(library, message, history, k, turns, source, after, before, article)
        return (*shown, writer.ticket(request, answered) if writer else None)

    def new_conversation(request: gr.Request):
        if writer:
            writer.forget(request)
        return [], render.passages_html(None), "", (), None

    def search(
        question: str,
        k: int = 5,
        source: str | None = None,
        after: str | None = None,
        before: str | None = None,
        article: str | None = None,
    ) -> list[dict]:
        """The k passages that best answer the question, with their fields and answering sentence; the
        filters as the JSON route /api/search takes them (one source here; None or "": no filter)."""
        try:
            where = filters.check(source, after, before, article)  # empty values: no filter
            passages = library.search(check_question(question), k=check_k(k), highlight=True, where=where)
            return [p.as_dict() for p in passages]
        except QAError as e:
            raise gr.Error(str(e)) from None

    def add_articles(files, title, text, progress=gr.Progress()):  # noqa: B008 (how Gradio asks for progress)
        # Runs beside searches (its own concurrency group): they keep answering from the old index
        # until the update swaps the new one in, and the Library reloads it by itself.
        # ``files`` arrive unprocessed (file data dicts) for their orig_name: the name the browser sent,
        # which Gradio's copy shortens (no folders, no <>); qa.web.adding makes it a harmless file name.
        files = [f for f in files or [] if isinstance(f, dict) and isinstance(f.get("path"), str)]
        uploads = [(f["path"], str(f.get("orig_name") or Path(f["path"]).name)) for f in files]
        folder = adding.collection_folder(library, collection)
        # The client names the paths: only files in Gradio's upload folder are read (see qa.web.server).
        within = gr_utils.get_upload_folder()

        def indexing(done: int, total: int) -> None:
            progress((done, total), desc="Indexing", unit="passages")

        try:
            added = adding.add(library, folder, uploads, title or "", text or "", within=within, progress=indexing)
        finally:
            _forget(path for path, _ in uploads if Path(path).resolve().is_relative_to(Path(within).resolve()))
        # Gradio's copies are gone (saved or refused, see _forget): the Files box always empties, else a
        # second press would send paths that no longer exist. The pasted text stays while anything was refused.
        keep = bool(added.refused)
        return (
            render.added_html(added),
            None,
            gr.skip() if keep else "",
            gr.skip() if keep else "",
            header(library),
            gr.update(choices=source_choices(library)),  # an added article may name a new source
        )

    folder = adding.collection_folder(library, collection)
    where = (
        render.escape_markdown(str(folder))
        if folder
        else "the collection folder (start the app with `--collection DIR`)"
    )
    # Uploads never added (a page left open, then closed) go after a day, checked hourly.
    with gr.Blocks(title="qa: ask the articles", fill_height=True, delete_cache=(3600, 86400)) as demo:
        title_md = gr.Markdown(header(library))
        turns = gr.State(())  # the conversation as data, beside the chat as shown
        last = gr.State(None)  # the newest answer's writing.Ticket, for the model to answer in words (QA_LLM_URL)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    label="Chat",
                    height=560,
                    elem_id="qa-chat",
                    latex_delimiters=[],
                    feedback_options=None,
                    buttons=["copy"],
                    group_consecutive_messages=False,
                )
                with gr.Row():
                    box = gr.Textbox(
                        placeholder="Ask a question, e.g. Who traveled to Mexico City?",
                        show_label=False,
                        scale=5,
                        elem_id="qa-question",
                        max_lines=6,
                        max_length=MAX_QUESTION_CHARS,
                    )
                    ask = gr.Button("Ask", variant="primary", scale=1, elem_id="qa-ask")
                with gr.Row():
                    k = gr.Slider(1, 10, value=5, step=1, label="Passages to show", elem_id="qa-k")
                    clear = gr.Button("New conversation", elem_id="qa-clear")
                gr.Examples(EXAMPLES, inputs=[box], label="Try")
                with gr.Accordion("Add articles", open=False, elem_id="qa-add-panel"):
                    gr.Markdown(
                        f"Upload {adding.FORMATS} files, or paste an article with its title. They are saved in "
                        f"{where} and indexed at once; restarts and the next `qa build` of that folder keep them."
                    )
                    with gr.Row(equal_height=False):
                        files = gr.File(label="Files", file_count="multiple", type="filepath", elem_id="qa-files")
                        with gr.Column():
                            new_title = gr.Textbox(
                                label="Title", max_lines=1, max_length=MAX_FIELD_CHARS, elem_id="qa-new-title"
                            )
                            new_text = gr.Textbox(
                                label="Text",
                                lines=6,
                                max_lines=20,
                                max_length=adding.MAX_PASTE_CHARS,
                                elem_id="qa-new-text",
                            )
                    add_button = gr.Button("Add to the collection", variant="secondary", elem_id="qa-add")
                    status = gr.HTML("", elem_id="qa-add-status")
            with gr.Column(scale=2):
                gr.Markdown("### Passages")
                with gr.Accordion("Filter", open=False, elem_id="qa-filter"):
                    sources = gr.Dropdown(
                        source_choices(library),
                        value=[],
                        multiselect=True,
                        label="Source",
                        info="only these sources (none: all)",
                        elem_id="qa-source",
                    )
                    with gr.Row():
                        after = gr.Textbox("", label="After", placeholder="YYYY-MM-DD", max_lines=1, elem_id="qa-after")
                        before = gr.Textbox(
                            "", label="Before", placeholder="YYYY-MM-DD", max_lines=1, elem_id="qa-before"
                        )
                    article = gr.Textbox(
                        "", label="Article", placeholder="id or words of its title", max_lines=1, elem_id="qa-article"
                    )
                panel = gr.HTML(render.passages_html(None), elem_id="qa-passages")
        io = dict(
            fn=answer,
            # The State is no parameter of the /chat endpoint: the session holds it.
            inputs=[box, chatbot, k, turns, sources, after, before, article],
            outputs=[chatbot, panel, box, turns, last],
            concurrency_id="search",
            concurrency_limit=concurrency,
        )
        asked = [box.submit(**io, api_name="chat"), ask.click(**io, api_visibility="private")]
        clear.click(new_conversation, outputs=[chatbot, panel, box, turns, last], api_visibility="private")
        if writer:
            writer.wire(asked, [chatbot, last, turns], concurrency)
        gr.api(search, api_name="search", concurrency_id="search", concurrency_limit=concurrency)
        add_button.click(
            add_articles,
            inputs=[files, new_title, new_text],
            outputs=[status, files, new_title, new_text, title_md, sources],
            concurrency_id="add",
            concurrency_limit=1,  # one update at a time; a second waits in the queue, not on the index lock
            api_visibility="private",
            preprocess=False,  # Gradio still checks that every file is one it received
        )
    return demo
