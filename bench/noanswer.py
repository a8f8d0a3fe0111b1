"""Fit "not in the articles" on SQuAD v2.0 dev: answerability's weights and the default threshold.

    python bench/noanswer.py              # every question; writes section "noanswer"
    python bench/noanswer.py --every 4    # every 4th question (all paragraphs indexed)

The questions of even-numbered Wikipedia articles fit a logistic regression of
"unanswerable" on ``qa.search.answer_features``; the threshold is set where it refuses
``--recall`` of the unanswerable questions of that half. The other half (other articles,
other questions) then gives the precision and recall reported, next to the weights in
use now. Copy the printed weights and threshold into ``qa/search.py`` and ``qa/config.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quality import SQUAD2, _every, embedder  # noqa: E402
from bench.report import write_section  # noqa: E402
from qa.config import Settings  # noqa: E402
from qa.evaluate import load_squad, temporary_index  # noqa: E402
from qa.search import ANSWERABILITY, answer_features  # noqa: E402


def collect(every: int, settings: Settings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features (one row per question, columns as ANSWERABILITY), unanswerable flags, fit-half flags."""
    dataset = _every(load_squad(SQUAD2, "paragraph"), every)
    emb = embedder()
    rows, impossible, fit_half = [], [], []
    with temporary_index(dataset, settings, emb) as lib:
        emb.encode([q.text for q in dataset.questions])
        for q in dataset.questions:
            features = answer_features(lib.search(q.text, k=10, highlight=True), q.text)
            rows.append([features.get(name, 0.0) for name in ANSWERABILITY])
            impossible.append(q.impossible)
            fit_half.append(int(q.article_id.split(".")[0]) % 2 == 0)
    return np.array(rows), np.array(impossible), np.array(fit_half)


def logistic(x: np.ndarray, y: np.ndarray, steps: int = 50, ridge: float = 1e-3) -> np.ndarray:
    """Weights (last one the intercept) of a logistic regression of ``y`` on ``x``, by Newton's method."""
    x = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + ridge * np.eye(len(w))
        w -= np.linalg.solve(hessian, x.T @ (p - y) + ridge * w)
    return w


def threshold_for(score: np.ndarray, impossible: np.ndarray, recall: float) -> float:
    """The threshold below which ``recall`` of the unanswerable questions' scores fall."""
    return float(np.quantile(score[impossible], recall))


def rates(score: np.ndarray, impossible: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(precision, recall) of refusing below ``threshold``, and the share of answerable ones refused."""
    refused = score < threshold
    hits = int((refused & impossible).sum())
    return (hits / max(int(refused.sum()), 1), hits / max(int(impossible.sum()), 1),
            float(refused[~impossible].mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=1, help="ask only every N-th question")
    parser.add_argument("--recall", type=float, default=0.55,
                        help="share of the fitting half's unanswerable questions to refuse (default 0.55)")
    args = parser.parse_args()
    settings = Settings()
    x, impossible, fit = collect(args.every, settings)
    w = logistic(x[fit], impossible[fit].astype(float))
    # Unanswerable is likely when w.x is high; answerability is the opposite, scaled so that
    # the passage's cosine weighs 1 (the scale changes nothing but the threshold's units).
    weights = -w[:-1] / abs(w[0])
    fitted = dict(zip(ANSWERABILITY, np.round(weights, 3).tolist()))
    now = np.array(list(ANSWERABILITY.values()))
    lines = []
    for name, vec, threshold in (
        ("in use now", now, settings.no_answer_threshold),
        ("fitted", weights, None),
    ):
        score = x @ vec
        if threshold is None:
            threshold = round(threshold_for(score[fit], impossible[fit], args.recall), 3)
        p, r, refused = rates(score[~fit], impossible[~fit], threshold)
        shown = dict(zip(ANSWERABILITY, np.round(vec, 3).tolist()))
        lines.append(f"| {name} | `{shown}` | {threshold} | {p:.3f} | {r:.3f} | {refused:.3f} |")
    body = (
        f"SQuAD v2.0 dev, every {args.every} question(s), paragraphs indexed with the default settings: "
        f"{int(fit.sum())} questions (of even-numbered articles) fit, {int((~fit).sum())} others "
        f"({int(impossible[~fit].sum())} unanswerable) measure. The fitted threshold refuses "
        f"{args.recall:.0%} of the fitting half's unanswerable questions.\n\n"
        "| weights | answerability = sum of weight x feature | threshold | precision | recall | "
        "answerable refused |\n|---|---|---|---|---|---|\n" + "\n".join(lines)
    )
    print(body)
    print(f"\nANSWERABILITY = {fitted}", file=sys.stderr)
    write_section("noanswer", '"Not in the articles" (SQuAD v2.0 dev)', body)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
