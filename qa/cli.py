"""The `qa` command: a thin layer over Library. Errors become one line on stderr and exit 1."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Iterator

from . import backends, handoff
from .backends import BACKENDS
from .config import SEARCH_MODES, Settings, offline
from .errors import HandOffError, QAError


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    offline()
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        settings = Settings.from_env(
            index_dir=args.index,
            model=getattr(args, "model", None),
            dense_index=getattr(args, "dense_index", None),
            backend=getattr(args, "backend", None),
            milvus_uri=getattr(args, "milvus_uri", None),
            ray_address=getattr(args, "ray", None),
            ray_actors=getattr(args, "ray_actors", None),
        )
        with _quiet("faiss", "qa.articles"):  # qa.articles' warnings are the report's skipped and notices lines
            return args.run(args, settings)
    except QAError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # bad settings from flags or QA_* variables
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Only errors from these loggers while the command runs (restored after: tests call main())."""
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def parser() -> argparse.ArgumentParser:
    """The `qa` command's arguments: every command and option, each with its help."""
    parser = argparse.ArgumentParser(prog="qa", description="Question answering over a collection of articles.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    index_help = "index directory (default: $QA_INDEX_DIR or index/)"

    p = sub.add_parser(
        "build",
        help="build or update the index of a collection of articles",
        description="Build the index, or update it: only new and changed articles are embedded.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        default=["seeds"],
        metavar="PATH",
        help="folders or files of .txt, .md, .html, .jsonl, .pdf articles (default: seeds/)",
    )
    p.add_argument("--index", help=index_help)
    p.add_argument(
        "--model",
        help="sentence-transformers model name or local path (default: $QA_MODEL or the packaged all-MiniLM-L6-v2)",
    )
    p.add_argument("--full", action="store_true", help="re-embed every article, even unchanged ones")
    p.add_argument(
        "--dense-index",
        metavar="KIND",
        help="dense index of what the build writes: auto (default: exact up to 150,000 passages a segment, IVF above), "
        "flat, or ivf[:nlist=N,nprobe=N,rescore=N]",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help='chunk and embed on a Ray cluster (pip install -e ".[ray]"): no ADDRESS starts one on this machine; '
        "auto joins the one this machine is part of; or ray://HOST:10001 (default: $QA_RAY_ADDRESS)",
    )
    p.add_argument(
        "--ray-actors",
        type=int,
        metavar="N",
        help="models embedding at once on the cluster (default: $QA_RAY_ACTORS, or one per CPU, per GPU if it has any)",
    )
    p.add_argument(
        "--no-app",
        action="store_true",
        help="build in this process even when `python app.py` serves the index (by default the app, "
        "which has the model loaded, runs the build)",
    )
    backend_options(p)
    p.set_defaults(run=_build)

    p = sub.add_parser(
        "search",
        help="print the passages that best answer a question",
        description="Print the passages that best answer QUESTION, best first.",
    )
    p.add_argument("question", metavar="QUESTION", help="the question, in quotes")
    p.add_argument("-k", type=int, default=5, help="how many passages (default: 5)")
    p.add_argument("--index", help=index_help)
    p.add_argument("--mode", choices=SEARCH_MODES, help="retrieval mode (default: hybrid)")
    p.add_argument(
        "--json", action="store_true", help='print a JSON object: "question", "k", "not_in_articles", "passages"'
    )
    p.add_argument(
        "--source", action="append", metavar="SOURCE", help="only articles of this source (repeat for several)"
    )
    p.add_argument("--after", metavar="DATE", help="only articles dated DATE or later (YYYY-MM-DD, YYYY-MM, YYYY)")
    p.add_argument("--before", metavar="DATE", help="only articles dated DATE or earlier (YYYY-MM-DD, YYYY-MM, YYYY)")
    p.add_argument("--article", metavar="ID_OR_TITLE", help="only the article with this id, or these title words")
    backend_options(p)
    p.set_defaults(run=_search)

    p = sub.add_parser("info", help="describe the index", description="Show the model, counts, size and build time.")
    p.add_argument("--index", help=index_help)
    p.add_argument("--json", action="store_true", help="print a JSON object")
    backend_options(p)
    p.set_defaults(run=_info)

    p = sub.add_parser(
        "check",
        help="verify every file of the index",
        description="Read the whole index and verify it: each file's checksum, the database, the full-text "
        "index, the counts. Exit status 1 when something is wrong. Minutes at millions of passages.",
    )
    p.add_argument("--index", help=index_help)
    backend_options(p)
    p.set_defaults(run=_check)

    p = sub.add_parser(
        "eval",
        help="measure retrieval quality on a SQuAD or BEIR data set",
        description="Index a data set in a temporary folder with the current settings, ask every "
        "question and print the metrics.",
    )
    kinds = p.add_subparsers(required=True, metavar="FORMAT")
    e = kinds.add_parser(
        "squad",
        help="a SQuAD v1.1 or v2.0 JSON file",
        description="hit@1/5/20, MRR@10, answer-sentence accuracy, latency; on v2.0 also "
        "'not in the articles' precision and recall.",
    )
    e.add_argument("file", metavar="FILE", help="SQuAD JSON, e.g. ../shared/data/squad-v1.1-dev/dev-v1.1.json")
    e.add_argument(
        "--unit",
        choices=["article", "paragraph"],
        default="paragraph",
        help="index each paragraph, or each Wikipedia article, as one article (default: paragraph)",
    )
    e.set_defaults(run=_eval_squad)
    e = kinds.add_parser(
        "beir",
        help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)",
        description="Document-level nDCG@10 and Recall@100, as BEIR computes them.",
    )
    e.add_argument("folder", metavar="DIR", help="BEIR folder, e.g. ../shared/data/scifact")
    e.add_argument("--split", default="test", help="qrels split to evaluate (default: test)")
    e.set_defaults(run=_eval_beir)
    for e in kinds.choices.values():
        e.add_argument("--limit", type=int, help="only the first N questions (a quick check)")
        e.add_argument("--mode", choices=SEARCH_MODES, help="retrieval mode (default: hybrid)")
        e.add_argument("--json", action="store_true", help="print one JSON object")
        e.add_argument("--model", help="sentence-transformers model name or local path")
        backend_options(e)
        e.set_defaults(index=None)
    return parser


def backend_options(p: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--milvus-uri``, as every command that reaches an index takes them."""
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="where the index lives: local (default: $QA_BACKEND or local: FAISS and SQLite in --index) "
        'or milvus (pip install -e ".[milvus]")',
    )
    p.add_argument(
        "--milvus-uri",
        metavar="URI",
        help="with --backend milvus: a file path for Milvus Lite, or http://host:19530 for a Milvus server "
        "(default: $QA_MILVUS_URI or INDEX/milvus.db); a token goes in $QA_MILVUS_TOKEN",
    )


def _build(args, settings: Settings) -> int:
    where = f"{backends.of(settings).where} from {', '.join(args.paths)}"
    report = None
    server = None if args.no_app or settings.ray_address else handoff.find(settings.index_dir)  # Ray: here
    if server is not None:
        print(f"Building {where} in the app serving it at {server.url} (pid {server.pid}) ...", file=sys.stderr)
        try:
            result = server.build(args.paths, settings, args.full, progress=sys.stderr.isatty())
        except HandOffError as e:
            print(f"The app can't take this build ({e}): building here.", file=sys.stderr)
        else:
            report = result.report
            for warning in result.warnings:
                print(f"warning: {warning}", file=sys.stderr)
    if report is None:
        from .library import Library

        print(f"Building {where} ...", file=sys.stderr)
        report = Library.build(args.paths, settings=settings, full=args.full).last_build
    if report.full_reason:
        print(f"Full build: {report.full_reason}.", file=sys.stderr)
    for skip in report.skipped:
        print(f"  skipped {skip.path}: {skip.reason}", file=sys.stderr)
    for notice in report.notices:
        print(f"  note: {notice}", file=sys.stderr)
    print(report.summary())
    return 0


def _search(args, settings: Settings) -> int:
    from . import filters
    from .library import Library
    from .search import answer_json, check_k, check_question

    question, k = check_question(args.question), check_k(args.k)  # before seconds spent loading the model
    where = filters.check(args.source, args.after, args.before, args.article)
    lib = Library.open(settings=settings.with_(mode=args.mode))
    passages = lib.search(question, k=k, highlight=True, where=where)
    refused = lib.not_in_articles(question, passages)
    if args.json:
        print(json.dumps(answer_json(question, k, passages, refused), ensure_ascii=False, indent=1))
        return 0
    if where and not passages:
        print("No article matches these filters: widen or leave out --source, --after, --before or --article.")
        return 0
    if refused:
        print("Not in the articles: nothing here answers the question. The closest passages:\n")
    for n, p in enumerate(passages, start=1):
        meta = " · ".join(x for x in (p.source, p.date, f"p. {p.page}" if p.page else "") if x)
        print(f"[{n}] {p.title}" + (f" ({meta})" if meta else "") + f"  score {p.score:.3f}")
        print(f"    {p.text}")
        if p.highlight:
            print(f"    {'nearest' if refused else 'answer'}: {p.highlight}")
        print()
    return 0


def _info(args, settings: Settings) -> int:
    from .library import Library

    info = Library.open(settings=settings).info()
    if args.json:
        print(json.dumps(dataclasses.asdict(info), indent=1))
        return 0
    for key, value in dataclasses.asdict(info).items():
        if key == "bytes":
            key, value = "size", f"{value / 2**20:.1f} MB"
        print(f"{key:>13}: {value}")
    return 0


def _check(args, settings: Settings) -> int:
    from .errors import StoreError

    began = time.perf_counter()
    where = backends.of(settings).where
    try:
        store = backends.of(settings).open()
    except StoreError as e:
        print(f"{where}: 1 problem\n  {e}")
        return 1
    try:
        problems = store.check()
    finally:
        store.close()
    seconds = time.perf_counter() - began
    if not problems:
        print(f"{where} ({store.generation}): no problems found in {seconds:.1f} s.")
        return 0
    print(f"{where} ({store.generation}): {len(problems)} problem{'s' * (len(problems) > 1)}")
    for problem in problems:
        print(f"  {problem}")
    print(f"Rebuild it with `qa build --full --index {settings.index_dir}`.")
    return 1


def _eval_squad(args, settings: Settings) -> int:
    from .eval import evaluate_squad

    report = evaluate_squad(args.file, unit=args.unit, settings=settings.with_(mode=args.mode), limit=args.limit)
    print(json.dumps(report.as_dict(), indent=1) if args.json else report.summary())
    return 0


def _eval_beir(args, settings: Settings) -> int:
    from .eval import evaluate_beir

    report = evaluate_beir(args.folder, split=args.split, settings=settings.with_(mode=args.mode), limit=args.limit)
    print(json.dumps(report.as_dict(), indent=1) if args.json else report.summary())
    return 0


if __name__ == "__main__":  # python -m qa.cli
    sys.exit(main())
