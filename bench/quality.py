"""Retrieval quality of qa's configurations on SQuAD v1.1/v2.0 dev and SciFact, into docs/benchmarks.md.

    python bench/quality.py               # the comparison tables (sections "quality-*")
    python bench/quality.py scifact       # one data set
    python bench/quality.py --chunking    # the chunk-size sweep on SQuAD v1.1 dev articles ("chunking")
    python bench/quality.py --every 10    # every 10th SQuAD question (all articles indexed)
    python bench/quality.py --chunking --limit 2624 --every 4   # first 7 articles, every 4th question
    python bench/quality.py --quick       # 300 questions per data set, nothing written

Each data set is indexed once with qa's own pipeline; every configuration then searches
that same index. Vectors are cached under $QA_BENCH_CACHE (default /tmp/qa-bench/) so a
rerun embeds only what changed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import write_section  # noqa: E402
from qa.config import Settings  # noqa: E402
from qa.embedding import CachedEmbedder, load_embedder  # noqa: E402
from qa.eval import (  # noqa: E402
    beir_metrics,
    load_beir,
    load_squad,
    squad_metrics,
    temporary_index,
)

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SQUAD1 = DATA / "squad-v1.1-dev" / "dev-v1.1.json"
SQUAD2 = DATA / "squad-v2.0-dev" / "dev-v2.0.json"
SCIFACT = DATA / "scifact"
CACHE = Path(os.environ.get("QA_BENCH_CACHE", "/tmp/qa-bench")) / "vectors"

# (row name, settings changed from the defaults)
CONFIGS = [
    ("dense only", {"mode": "dense", "answer_candidates": 0}),
    ("dense + answer selection", {"mode": "dense"}),
    ("lexical only (FTS5 BM25)", {"mode": "lexical", "answer_candidates": 0}),
    ("hybrid, reciprocal rank (k=60)", {"fusion": "rrf", "answer_candidates": 0}),
    ("hybrid, convex fusion", {"answer_candidates": 0}),
    ("hybrid + answer selection (default)", {}),
]
SETS = {
    "squad1-paragraphs": ("SQuAD v1.1 dev, paragraphs", lambda n: load_squad(SQUAD1, "paragraph", n)),
    "squad1-articles": ("SQuAD v1.1 dev, articles", lambda n: load_squad(SQUAD1, "article", n)),
    "squad2": ("SQuAD v2.0 dev, paragraphs", lambda n: load_squad(SQUAD2, "paragraph", n)),
    "scifact": ("SciFact test (BEIR)", lambda n: load_beir(SCIFACT, "test", n)),
}
CHUNK_SIZES = (64, 96, 128, 192, 254)


def embedder() -> CachedEmbedder:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    return CachedEmbedder(load_embedder(Settings().model)).load(CACHE)


def measure(dataset, settings: Settings, emb: CachedEmbedder, configs) -> list[tuple[str, dict, int]]:
    """Index ``dataset`` once, then the metrics of each configuration: [(name, metrics, chunks)]."""
    began = time.perf_counter()
    rows = []
    with temporary_index(dataset, settings, emb) as lib:
        emb.save(CACHE)
        print(f"  indexed in {time.perf_counter() - began:.0f} s", file=sys.stderr)
        for name, changes in configs:
            lib.settings = settings.with_(**changes)
            metrics = beir_metrics(lib, dataset) if dataset.qrels else squad_metrics(lib, dataset)
            rows.append((name, metrics, lib.info().chunks))
            print(f"  {name}: {_fmt(metrics)}", file=sys.stderr)
        emb.save(CACHE)
    return rows


def quality(name: str, settings: Settings, limit: int | None, every: int = 1) -> str:
    """The table of one data set: a row per configuration, all on one index."""
    title, load = SETS[name]
    dataset = every_nth(load(limit), every)
    print(f"{title}: {len(dataset.questions)} questions", file=sys.stderr)
    rows = measure(dataset, settings, embedder(), CONFIGS)
    return _table(title, dataset, rows, settings)


def chunking(limit: int | None, every: int = 1) -> str:
    emb, rows = embedder(), []
    dataset = every_nth(load_squad(SQUAD1, "article", limit), every)
    for size in CHUNK_SIZES:
        print(f"chunk_tokens={size}", file=sys.stderr)
        [(_, metrics, chunks)] = measure(dataset, Settings(chunk_tokens=size), emb, [("default", {})])
        rows.append(
            f"| {size:>3} | {chunks} | {metrics['words_per_passage']:.0f} | {metrics['hit@1']:.3f} | "
            f"{metrics['hit@5']:.3f} | {metrics['hit@20']:.3f} | {metrics['mrr@10']:.3f} | "
            f"{metrics['answer_sentence']:.3f} | {metrics['latency_ms']:.0f} |"
        )
    head = (
        f"SQuAD v1.1 dev, article unit: {len(dataset.questions)} questions over the "
        f"{len(dataset.articles)} Wikipedia articles they come from; default search settings.\n\n"
        "| chunk_tokens | chunks | words/passage | hit@1 | hit@5 | hit@20 | MRR@10 | answer sentence | "
        "median ms |\n|---|---|---|---|---|---|---|---|---|"
    )
    return head + "\n" + "\n".join(sorted(rows))


def every_nth(dataset, every: int):
    """Every ``every``-th question (BEIR sets are kept whole); all articles stay indexed."""
    if every <= 1 or dataset.qrels:
        return dataset
    return dataclasses.replace(dataset, questions=dataset.questions[::every])


def _table(title: str, dataset, rows, settings: Settings) -> str:
    if dataset.qrels:
        head = "| configuration | nDCG@10 | Recall@100 | median ms |\n|---|---|---|---|"
        body = [f"| {n} | {m['ndcg@10']:.3f} | {m['recall@100']:.3f} | {m['latency_ms']:.1f} |" for n, m, _ in rows]
    else:
        extra = "no_answer_precision" in rows[0][1]
        head = (
            "| configuration | hit@1 | hit@5 | hit@20 | MRR@10 | answer sentence | words/passage | median ms |"
            + (" no-answer P | no-answer R | answerable refused |" if extra else "")
            + "\n|---|---|---|---|---|---|---|---|"
            + ("---|---|---|" if extra else "")
        )
        body = [
            f"| {n} | {m['hit@1']:.3f} | {m['hit@5']:.3f} | {m['hit@20']:.3f} | {m['mrr@10']:.3f} | "
            f"{m['answer_sentence']:.3f} | {m['words_per_passage']:.0f} | {m['latency_ms']:.1f} |"
            + (
                f" {m['no_answer_precision']:.3f} | {m['no_answer_recall']:.3f} | {m['answerable_refused']:.3f} |"
                if extra
                else ""
            )
            for n, m, _ in rows
        ]
    chunks = rows[0][2]
    return (
        f"{len(dataset.questions)} questions, {len(dataset.articles)} articles, {chunks} chunks "
        f"(chunk_tokens={settings.chunk_tokens}, dense_weight={settings.dense_weight}, "
        f"answer_candidates={settings.answer_candidates}).\n\n{head}\n" + "\n".join(body)
    )


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sets",
        nargs="*",
        metavar="SET",
        help=f"data sets to measure: {', '.join(SETS)} (default: all); each has its own section",
    )
    parser.add_argument("--chunking", action="store_true", help="run the chunk-size sweep instead")
    parser.add_argument("--quick", action="store_true", help="300 questions per data set; write nothing")
    parser.add_argument("--limit", type=int, help="only the first N questions of each data set (and their articles)")
    parser.add_argument(
        "--every", type=int, default=1, help="ask only every N-th SQuAD question (all articles stay indexed)"
    )
    parser.add_argument("--chunk-tokens", type=int, help="index with this chunk budget instead of the default")
    args = parser.parse_args()
    # Checked here, not by argparse's choices: with nargs="*" it also checks the default list, and refuses it.
    unknown = [name for name in args.sets if name not in SETS]
    if unknown:
        parser.error(f"unknown data set {unknown[0]!r}: choose from {', '.join(SETS)}")
    args.sets = args.sets or list(SETS)
    limit = 300 if args.quick else args.limit
    if args.chunking:
        sections = [("chunking", "Chunk size (SQuAD v1.1 dev, article unit)", lambda: chunking(limit, args.every))]
    else:
        settings = Settings().with_(chunk_tokens=args.chunk_tokens)
        sections = [
            (
                f"quality-{name}",
                f"Retrieval quality: {SETS[name][0]}",
                lambda name=name: quality(name, settings, limit, args.every),
            )
            for name in args.sets
        ]
    for key, title, run in sections:
        body = run()
        print(body)
        if not args.quick:
            write_section(key, title, body)


if __name__ == "__main__":
    main()
