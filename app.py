"""The chat web UI: `python app.py` serves the index in index/ at http://127.0.0.1:7860 (Gradio wiring only).

With no index yet, it first builds one from seeds/. Options: --host, --port, --index
(or QA_HOST, QA_PORT, QA_INDEX_DIR). Programs can use the same search through the
Gradio API (endpoints /chat and /search) or the JSON route POST /api/search.
"""

from __future__ import annotations

import os

# Before gradio or huggingface_hub are imported: no analytics, no telemetry, no downloads.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from qa import Library, QAError, Settings  # noqa: E402
from qa.errors import NoIndexError  # noqa: E402

SEEDS = Path(__file__).resolve().parent / "seeds"
# Searches are CPU-bound: a few at once keep every core busy; more would only thrash.
DEFAULT_CONCURRENCY = 4
MAX_SHOWN_QUESTION = 1000
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


def build_ui(library: Library, concurrency: int):
    """The Blocks app: chat on the left, the passages panel on the right."""
    import gradio as gr

    from qa import chat
    from qa.render import EMPTY_QUESTION, escape_markdown, passages_html, reply_markdown
    from qa.web import passage_dict

    def respond(message, history, k):
        history = list(history or [])
        text = " ".join(chat.message_text(message).split())
        if not text:
            return history + [{"role": "assistant", "content": EMPTY_QUESTION}], gr.skip(), ""
        try:
            answer = chat.ask(library, text, history, k=int(k))
        except QAError as e:
            raise gr.Error(str(e)) from None
        shown = text if len(text) <= MAX_SHOWN_QUESTION else text[:MAX_SHOWN_QUESTION] + " …"
        history += [
            {"role": "user", "content": escape_markdown(shown)},
            {"role": "assistant", "content": reply_markdown(answer)},
        ]
        return history, passages_html(answer), ""

    def search(question: str, k: int = 5) -> list[dict]:
        """The k passages that best answer the question, with their fields and answering sentence."""
        try:
            return [passage_dict(p) for p in library.search(question, k=int(k), highlight=True)]
        except QAError as e:
            raise gr.Error(str(e)) from None

    info = library.info()
    with gr.Blocks(title="qa: ask the articles", fill_height=True) as demo:
        gr.Markdown(
            f"## Ask the articles\nChat with {info.articles} articles ({info.chunks} passages). "
            "Answers quote the articles, with numbered citations; follow-up questions are read in the "
            "context of the conversation."
        )
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

    from qa.render import CSS
    from qa.web import router

    demo = build_ui(library, args.concurrency).queue(default_concurrency_limit=args.concurrency)
    app = FastAPI(title="qa", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(router(library, args.concurrency))
    app = gr.mount_gradio_app(app, demo, path="/", css=CSS, footer_links=["api"])
    url = f"http://{args.host}:{args.port}"
    print(
        f"Serving {settings.index_dir}/ at {url}  (JSON: POST {url}/api/search; "
        f"ready in {time.perf_counter() - began:.1f} s; Ctrl+C to stop)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
