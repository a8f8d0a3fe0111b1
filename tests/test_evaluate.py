"""The evaluation: metric functions on hand-made data with known answers, loaders, and `qa eval` end to end."""

import json

import numpy as np
import pytest

from qa import Settings
from qa.cli import main
from qa.eval import (
    DatasetError,
    contains,
    evaluate_beir,
    evaluate_squad,
    first_hit,
    hit_at,
    load_beir,
    load_squad,
    mrr_at,
    ndcg_at,
    precision_recall,
    recall_at,
)

from conftest import FIXTURES

SQUAD1 = FIXTURES / "squad-v1.1-dev" / "dev-v1.1.json"
SQUAD2 = FIXTURES / "squad-v2.0-dev" / "dev-v2.0.json"
SCIFACT = FIXTURES / "scifact"


@pytest.mark.parametrize(
    ("ranks", "k", "expected"),
    [
        ([1], 1, 1.0),
        ([2], 1, 0.0),
        ([2], 5, 1.0),
        ([None, None], 20, 0.0),
        ([1, 3, None, 21], 20, 0.5),
        ([], 5, 0.0),
    ],
)
def test_hit_at(ranks, k, expected):
    assert hit_at(ranks, k) == expected


@pytest.mark.parametrize(
    ("ranks", "expected"),
    [
        ([2], 0.5),
        ([1, 2], 0.75),
        ([None, 4], 0.125),
        ([11], 0.0),  # beyond the cut-off of 10
        ([10], 0.1),
        ([], 0.0),
    ],
)
def test_mrr_at_10(ranks, expected):
    assert mrr_at(ranks, 10) == pytest.approx(expected)


def test_first_hit_is_one_based():
    assert first_hit([False, True]) == 2
    assert first_hit([True]) == 1
    assert first_hit([False, False]) is None
    assert first_hit([]) is None


@pytest.mark.parametrize(
    ("ranked", "relevant", "expected"),
    [
        (["a", "b"], {"a": 1}, 1.0),
        (["x", "a"], {"a": 1}, 1 / np.log2(3)),
        (["a", "x", "b"], {"a": 1, "b": 1}, (1 + 1 / 2) / (1 + 1 / np.log2(3))),
        (["x", "y"], {"a": 1}, 0.0),
        (["b", "a"], {"a": 2, "b": 1}, (1 + 2 / np.log2(3)) / (2 + 1 / np.log2(3))),  # graded, linear gains
        ([], {"a": 1}, 0.0),
    ],
)
def test_ndcg_at(ranked, relevant, expected):
    assert ndcg_at(ranked, relevant, 10) == pytest.approx(expected)


def test_ndcg_counts_only_the_top_k():
    assert ndcg_at(["x"] * 10 + ["a"], {"a": 1}, 10) == 0.0


@pytest.mark.parametrize(
    ("ranked", "k", "expected"),
    [
        (["a", "b"], 100, 2 / 3),
        (["a", "b"], 1, 1 / 3),
        (["x"], 100, 0.0),
    ],
)
def test_recall_at(ranked, k, expected):
    assert recall_at(ranked, {"a": 1, "b": 1, "c": 1, "z": 0}, k) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("span", "answers", "expected"),
    [
        ((0, 10), [(2, 5)], True),
        ((0, 10), [(0, 10)], True),
        ((0, 10), [(8, 12)], False),
        ((5, 10), [(0, 3), (6, 7)], True),
        ((0, 10), [], False),
    ],
)
def test_contains(span, answers, expected):
    assert contains(span, answers) is expected


def test_precision_recall():
    assert precision_recall([True, True, False, False], [True, False, True, False]) == (0.5, 0.5)
    assert precision_recall([False], [True]) == (0.0, 0.0)


TINY_SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Apple_Inc",
            "paragraphs": [
                {
                    "context": "Apple opened its first store in Paris. Thousands queued on the Rue de Rivoli.",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "Where did Apple open a store?",
                            "answers": [{"text": "Paris", "answer_start": 32}],
                        }
                    ],
                },
                {
                    "context": "The store sells the iPhone. It opened on a Saturday.",
                    "qas": [
                        {
                            "id": "q2",
                            "question": "What does the store sell?",
                            "answers": [{"text": "the iPhone", "answer_start": 16}],
                        },
                        {"id": "q3", "question": "Who won the 1998 World Cup?", "answers": [], "is_impossible": True},
                    ],
                },
            ],
        },
        {
            "title": "Boeing",
            "paragraphs": [
                {
                    "context": "Boeing delayed the 787 Dreamliner again. The first delivery moves to 2009.",
                    "qas": [
                        {
                            "id": "q4",
                            "question": "When is the first 787 delivery?",
                            "answers": [{"text": "2009", "answer_start": 69}, {"text": "to 2009", "answer_start": 66}],
                        }
                    ],
                },
            ],
        },
    ],
}


@pytest.fixture
def tiny_squad(tmp_path):
    path = tmp_path / "tiny-squad.json"
    path.write_text(json.dumps(TINY_SQUAD), encoding="utf-8")
    return path


@pytest.mark.parametrize("unit", ["paragraph", "article"])
def test_load_squad_maps_answers_into_the_article_text(tiny_squad, unit):
    data = load_squad(tiny_squad, unit)
    texts = {a.id: a.text for a in data.articles}
    assert len(data.articles) == (3 if unit == "paragraph" else 2)
    for q in data.questions:
        assert all(texts[q.article_id][s:e] in ("Paris", "the iPhone", "2009", "to 2009") for s, e in q.answers)
    assert [q.impossible for q in data.questions] == [False, False, True, False]
    assert data.articles[0].title == "Apple Inc"


def test_load_squad_limit_keeps_only_the_articles_asked_about(tiny_squad):
    data = load_squad(tiny_squad, "article", limit=2)
    assert [q.id for q in data.questions] == ["q1", "q2"]
    assert [a.title for a in data.articles] == ["Apple Inc"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("{not json", "not valid JSON"), ('{"data": []}', "no SQuAD questions")],
)
def test_load_squad_errors_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "x.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_squad(path)
    with pytest.raises(DatasetError, match="unit"):
        load_squad(path, unit="sentence")


@pytest.fixture
def tiny_beir(tmp_path):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    docs = [
        ("d1", "Paris store", "Apple opened its first store in Paris."),
        ("d2", "Dreamliner", "Boeing delayed the 787 Dreamliner again."),
        ("d3", "Jobs", "General Motors will cut 5,000 jobs in Michigan."),
    ]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in docs))
    queries = [("q1", "Boeing 787 delay"), ("q2", "jobs cut in Michigan"), ("q3", "unjudged")]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps({"_id": i, "text": t}) for i, t in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td3\t1\n")
    return folder


def test_load_beir_puts_the_title_first_and_keeps_judged_queries(tiny_beir):
    data = load_beir(tiny_beir)
    assert [q.id for q in data.questions] == ["q1", "q2"]
    assert data.articles[0].text == "Paris store\n\nApple opened its first store in Paris."
    assert data.qrels == {"q1": {"d2": 1}, "q2": {"d3": 1}}
    with pytest.raises(DatasetError, match="qrels"):
        load_beir(tiny_beir, split="dev")


def test_beir_metrics_on_a_known_corpus(tiny_beir, fake_embedder):
    report = evaluate_beir(tiny_beir, settings=Settings(mode="lexical"), embedder=fake_embedder)
    assert report.metrics["ndcg@10"] == 1.0 and report.metrics["recall@100"] == 1.0
    assert report.questions == 2 and report.articles == 3


def test_squad_metrics_on_a_known_corpus(tiny_squad, fake_embedder):
    report = evaluate_squad(tiny_squad, "paragraph", settings=Settings(mode="lexical"), embedder=fake_embedder)
    m = report.metrics
    assert m["hit@1"] == 1.0 and m["mrr@10"] == 1.0  # each answerable question names its paragraph's words
    assert 0 <= m["no_answer_precision"] <= 1 and "answerable_refused" in m
    assert report.as_dict()["questions"] == 4


# ---- `qa eval` end to end, with the real model, on a small slice of each data set (tests/fixtures) ----


@pytest.fixture
def real_model(real_embedder):  # the session's loaded model, so each CLI run does not reload it
    return real_embedder


def _eval(capsys, *args):
    assert main(["eval", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_squad_v1_paragraphs(capsys, real_model):
    out = _eval(capsys, "squad", SQUAD1, "--limit", "20")  # Super Bowl 50: 54 look-alike paragraphs
    assert out["questions"] == 20 and out["unit"] == "paragraph"
    assert out["hit@1"] >= 0.3 and out["hit@20"] >= 0.9 and out["answer_sentence"] >= 0.15
    assert out["latency_ms"] > 0 and "no_answer_precision" not in out


def test_eval_squad_v1_articles(capsys, real_model):
    out = _eval(capsys, "squad", SQUAD1, "--unit", "article", "--limit", "20")
    assert out["articles"] == 1 and out["hit@5"] >= 0.7


def test_eval_squad_v2_reports_no_answer_precision_and_recall(capsys, real_model):
    out = _eval(capsys, "squad", SQUAD2, "--limit", "20")
    assert {"no_answer_precision", "no_answer_recall", "answerable_refused"} <= set(out)


def test_eval_beir_scifact(capsys, real_model):
    out = _eval(capsys, "beir", SCIFACT, "--limit", "5")  # 5 claims over 106 abstracts: a CI-sized slice
    assert out["questions"] == 5 and out["ndcg@10"] >= 0.5 and out["recall@100"] >= 0.8


def test_eval_text_output_and_errors(capsys, tiny_squad, tmp_path):
    assert main(["eval", "squad", str(tmp_path / "missing.json")]) == 1
    assert "does not exist" in capsys.readouterr().err
