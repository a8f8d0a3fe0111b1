"""The chat web UI: `python app.py` serves the index in index/ at http://127.0.0.1:7860 (Gradio wiring only).

With no index yet, it first builds one from seeds/. Options: --host, --port, --index,
--collection (or QA_HOST, QA_PORT, QA_INDEX_DIR, QA_COLLECTION). Programs can use the same
search through the Gradio API (endpoints /chat and /search) or the JSON route POST /api/search.
Its "Add articles" panel saves uploads and pasted text into the collection folder and indexes them.
While it runs, `qa build` of its index hands the build to it (the model is loaded already; qa.serving).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from qa import Library, QAError, Settings
from qa.config import offline
from qa.errors import NoIndexError

offline()  # before gradio or huggingface_hub are imported: no analytics, no telemetry, no downloads

SEEDS = Path(__file__).resolve().parent / "seeds"
# Searches are CPU-bound: a few at once keep every core busy; more would only thrash.
DEFAULT_CONCURRENCY = 4
EXAMPLES = [
    "Who traveled to Mexico City?",
    "What did he say about the cycle of crime?",
    "What is the new security framework meant to replace?",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description="Serve the chat web UI for the articles in an index.")
    parser.add_argument(
        "--host",
        default=env.get("QA_HOST") or "127.0.0.1",
        help="address to listen on (default: $QA_HOST or 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=env.get("QA_PORT") or "7860",  # a string: argparse converts it and names a bad value
        help="port to listen on (default: $QA_PORT or 7860)",
    )
    parser.add_argument(
        "--index",
        help="index directory (default: $QA_INDEX_DIR or index/); built from seeds/ first if it holds no index",
    )
    parser.add_argument(
        "--collection",
        default=env.get("QA_COLLECTION") or None,
        help="folder where articles added in the app are saved (default: $QA_COLLECTION, else seeds/ when the "
        "index was built from it, else the first folder it was built from); it joins the index's folders",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=env.get("QA_CONCURRENCY") or str(DEFAULT_CONCURRENCY),
        help=f"searches that run at once; others queue (default: {DEFAULT_CONCURRENCY})",
    )
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error(f"--concurrency must be 1 or more, got {args.concurrency}")
    return args


def open_library(settings: Settings) -> Library:
    """The index at settings.index_dir, built from seeds/ first when there is none."""
    try:
        return Library.open(settings=settings)
    except NoIndexError:
        print(f"No index in {settings.index_dir}/ yet: building one from {SEEDS} ...", file=sys.stderr, flush=True)
        lib = Library.build([SEEDS], settings=settings, progress=True)
        print(lib.last_build.summary(), file=sys.stderr, flush=True)
        return lib


def collection_folder(library: Library, chosen: str | None) -> Path | None:
    """Where added articles go: ``chosen``, else seeds/ if the index was built from it, else its first folder.

    None when the index records no folder (built from single files, or before folders were recorded).
    """
    if chosen:
        return Path(chosen)
    folders = [Path(s) for s in library.sources if Path(s).is_dir()]
    if SEEDS.resolve() in folders:
        return SEEDS
    return folders[0] if folders else None


def header(library: Library) -> str:
    info = library.info()
    return (
        f"## Ask the articles\nChat with {info.articles} articles ({info.chunks} passages). "
        "Answers quote the articles, with numbered citations; follow-up questions are read in the "
        "context of the conversation."
    )


def build_ui(library: Library, concurrency: int, collection: str | None = None):
    """The Blocks app: chat on the left with the "Add articles" panel under it, the passages panel on the right."""
    import gradio as gr
    from gradio import utils as gr_utils

    from qa import adding, chat
    from qa.render import EMPTY_QUESTION, escape_markdown, passages_html, reply_markdown
    from qa.search import check_k, check_question
    from qa.uploads import FORMATS

    def respond(message, history, k):
        history = list(history or [])
        try:
            text = check_question(chat.message_text(message))
        except QAError:
            return history + [{"role": "assistant", "content": EMPTY_QUESTION}], gr.skip(), ""
        try:
            answer = chat.ask(library, text, history, k=check_k(int(k)))
        except QAError as e:
            raise gr.Error(str(e)) from None
        history += [
            {"role": "user", "content": escape_markdown(text)},
            {"role": "assistant", "content": reply_markdown(answer)},
        ]
        return history, passages_html(answer), ""

    def search(question: str, k: int = 5) -> list[dict]:
        """The k passages that best answer the question, with their fields and answering sentence."""
        try:
            return [p.as_dict() for p in library.search(check_question(question), k=check_k(k), highlight=True)]
        except QAError as e:
            raise gr.Error(str(e)) from None

    def add_articles(files, title, text):
        # Runs beside searches (its own concurrency group): they keep answering from the old index
        # until the update swaps the new one in, and the Library reloads it by itself.
        # ``files`` arrive unprocessed (file data dicts) for their orig_name: the name the browser sent,
        # which Gradio's copy shortens (no folders, no <>); qa.uploads makes it a harmless file name.
        files = [f for f in files or [] if isinstance(f, dict) and isinstance(f.get("path"), str)]
        uploads = [(f["path"], str(f.get("orig_name") or Path(f["path"]).name)) for f in files]
        folder = collection_folder(library, collection)
        # The client names the paths: only files in Gradio's upload folder are read (see main()).
        within = gr_utils.get_upload_folder()
        added = adding.add(library, folder, uploads, title or "", text or "", within=within)
        keep = bool(added.refused)  # let the user fix what was refused; clear what all went in
        return (
            added.html(),
            gr.skip() if keep else None,
            gr.skip() if keep else "",
            gr.skip() if keep else "",
            header(library),
        )

    folder = collection_folder(library, collection)
    where = escape_markdown(str(folder)) if folder else "the collection folder (start the app with `--collection DIR`)"
    with gr.Blocks(title="qa: ask the articles", fill_height=True) as demo:
        title_md = gr.Markdown(header(library))
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
                    )
                    ask = gr.Button("Ask", variant="primary", scale=1, elem_id="qa-ask")
                with gr.Row():
                    k = gr.Slider(1, 10, value=5, step=1, label="Passages to show", elem_id="qa-k")
                    clear = gr.Button("New conversation", elem_id="qa-clear")
                gr.Examples(EXAMPLES, inputs=[box], label="Try")
                with gr.Accordion("Add articles", open=False, elem_id="qa-add-panel"):
                    gr.Markdown(
                        f"Upload {FORMATS} files, or paste an article with its title. They are saved in "
                        f"{where} and indexed at once; restarts and the next `qa build` of that folder keep them."
                    )
                    with gr.Row(equal_height=False):
                        files = gr.File(label="Files", file_count="multiple", type="filepath", elem_id="qa-files")
                        with gr.Column():
                            new_title = gr.Textbox(label="Title", max_lines=1, elem_id="qa-new-title")
                            new_text = gr.Textbox(label="Text", lines=6, max_lines=20, elem_id="qa-new-text")
                    add_button = gr.Button("Add to the collection", variant="secondary", elem_id="qa-add")
                    status = gr.HTML("", elem_id="qa-add-status")
            with gr.Column(scale=2):
                gr.Markdown("### Passages")
                panel = gr.HTML(passages_html(None), elem_id="qa-passages")
        io = dict(
            fn=respond,
            inputs=[box, chatbot, k],
            outputs=[chatbot, panel, box],
            concurrency_id="search",
            concurrency_limit=concurrency,
        )
        box.submit(**io, api_name="chat")
        ask.click(**io, api_visibility="private")
        clear.click(lambda: ([], passages_html(None), ""), outputs=[chatbot, panel, box], api_visibility="private")
        gr.api(search, api_name="search", concurrency_id="search", concurrency_limit=concurrency)
        add_button.click(
            add_articles,
            inputs=[files, new_title, new_text],
            outputs=[status, files, new_title, new_text, title_md],
            concurrency_id="add",
            concurrency_limit=1,  # one update at a time; a second waits in the queue, not on the index lock
            api_visibility="private",
            preprocess=False,  # Gradio still checks that every file is one it received
        )
    return demo


def main(argv: list[str] | None = None) -> int:
    began = time.perf_counter()
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        settings = Settings.from_env(index_dir=args.index)
        library = open_library(settings)
        library.search(EXAMPLES[0], k=1, highlight=True)  # warm up, so the first user isn't the one who waits
    except (QAError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    import gradio as gr
    import uvicorn
    from fastapi import FastAPI

    from qa import serving
    from qa.render import CSS
    from qa.uploads import MAX_JSONL_UPLOAD_BYTES
    from qa.web import router

    demo = build_ui(library, args.concurrency, args.collection).queue(default_concurrency_limit=args.concurrency)
    app = FastAPI(title="qa", docs_url=None, redoc_url=None, openapi_url=None)
    token = serving.new_token()  # `qa build` reads it from the index folder and hands its builds to this app
    app.include_router(router(library, args.concurrency, build_token=token))
    # Gradio refuses bigger uploads before they reach the panel; smaller ones get qa's own limits and messages.
    app = gr.mount_gradio_app(app, demo, path="/", css=CSS, footer_links=["api"], max_file_size=MAX_JSONL_UPLOAD_BYTES)
    # Gradio refuses input files that were not uploaded to it only once the Blocks count as launched,
    # which mount_gradio_app never marks: without this, a client could name any server file as an
    # upload (or a chat message's file) and have it copied into Gradio's cache and into the collection.
    demo.has_launched = True
    url = f"http://{args.host}:{args.port}"
    print(
        f"Serving {settings.index_dir}/ at {url}  (JSON: POST {url}/api/search; "
        f"ready in {time.perf_counter() - began:.1f} s; Ctrl+C to stop)",
        file=sys.stderr,
        flush=True,
    )
    # uvicorn stops gracefully on SIGINT and SIGTERM, then raises the signal again: as exceptions
    # (not the default SIGTERM handler's sudden death) they let the .server file be removed.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        with serving.announce(settings.index_dir, args.host, args.port, token):
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    except KeyboardInterrupt:
        return 130
    return 0


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
