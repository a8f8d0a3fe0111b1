"""Evaluation data sets read into articles and questions: SQuAD (v1.1, v2.0) files and BEIR folders."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..articles import Article
from ..errors import QAError

UNITS = ("article", "paragraph")


class DatasetError(QAError):
    """An evaluation data set is missing or not in the expected format."""


@dataclass(frozen=True)
class Question:
    """A question with the character spans of its reference answers in its article's text."""

    id: str
    text: str
    article_id: str = ""
    answers: tuple[tuple[int, int], ...] = ()
    impossible: bool = False


@dataclass(frozen=True)
class Dataset:
    """Articles to index and questions to ask. ``qrels``: BEIR judgements, query id -> {doc id: grade}."""

    name: str
    articles: list[Article]
    questions: list[Question]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)


def load_squad(path: str | Path, unit: str = "paragraph", limit: int | None = None) -> Dataset:
    """A SQuAD v1.1/v2.0 file as a Dataset.

    ``unit="paragraph"``: each paragraph is one article; ``"article"``: each Wikipedia
    article is one article, its paragraphs joined by blank lines (answer offsets shifted
    to match). ``limit``: only the first ``limit`` questions, and only the Wikipedia
    articles they come from are indexed.
    """
    if unit not in UNITS:
        raise DatasetError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    raw = _read_json(path)
    articles: list[Article] = []
    questions: list[Question] = []
    for a_no, wiki in enumerate(raw.get("data", [])):
        if limit is not None and len(questions) >= limit:
            break
        title = str(wiki.get("title", "")).replace("_", " ")
        parts, offset = [], 0
        for p_no, para in enumerate(wiki["paragraphs"]):
            context = para["context"]
            aid = f"{a_no}" if unit == "article" else f"{a_no}.{p_no}"
            if unit == "paragraph":
                articles.append(Article(id=aid, title=title, text=context))
                offset = 0
            for qa in para["qas"]:
                spans = tuple(
                    sorted(
                        {
                            (offset + x["answer_start"], offset + x["answer_start"] + len(x["text"]))
                            for x in qa.get("answers", [])
                        }
                    )
                )
                questions.append(
                    Question(str(qa["id"]), qa["question"], aid, spans, bool(qa.get("is_impossible", False)))
                )
            parts.append(context)
            offset += len(context) + 2
        if unit == "article":
            articles.append(Article(id=f"{a_no}", title=title, text="\n\n".join(parts)))
    if not questions:
        raise DatasetError(f"{path} holds no SQuAD questions (expected data[].paragraphs[].qas[]).")
    return Dataset(Path(path).stem, articles, questions[:limit])


def load_beir(folder: str | Path, split: str = "test", limit: int | None = None) -> Dataset:
    """A BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) as a Dataset.

    An article's text is its title, a blank line, then its text. ``limit``: only the
    first ``limit`` judged queries, over their judged documents plus the first
    ``20 * limit`` others of the corpus.
    """
    folder = Path(folder)
    qrels: dict[str, dict[str, int]] = {}
    for line in _read_lines(folder / "qrels" / f"{split}.tsv")[1:]:
        qid, did, grade = line.split("\t")[:3]
        qrels.setdefault(qid, {})[did] = int(grade)
    queries = {r["_id"]: r["text"] for r in map(json.loads, _read_lines(folder / "queries.jsonl"))}
    qids = [q for q in queries if q in qrels][:limit]
    wanted = {d for q in qids for d in qrels[q]}
    articles = []
    for n, rec in enumerate(map(json.loads, _read_lines(folder / "corpus.jsonl"))):
        if limit is None or rec["_id"] in wanted or n < 20 * limit:
            text = "\n\n".join(x for x in (rec.get("title", "").strip(), rec.get("text", "").strip()) if x)
            articles.append(Article(id=rec["_id"], title=rec.get("title", ""), text=text))
    questions = [Question(q, queries[q]) for q in qids]
    return Dataset(folder.name, articles, questions, {q: qrels[q] for q in qids})


def _read_json(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path} does not exist. Give a SQuAD JSON file, e.g. dev-v1.1.json.") from None
    except ValueError as e:
        raise DatasetError(f"{path} is not valid JSON ({e}).") from None


def _read_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text("utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise DatasetError(
            f"{path} does not exist. Give a BEIR folder with corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv."
        ) from None
