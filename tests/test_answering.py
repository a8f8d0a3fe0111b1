"""The answer stage: the answering sentence, "not in the articles", and the sentence vectors the build keeps."""

import pytest

from qa import Library, Settings
from qa.answering import (
    ANSWERABILITY,
    answer_features,
    answerability,
    mark_answers,
    names,
    not_in_articles,
)
from qa.search import Passage


def _passage(similarity, answer_score=None, text="Apple opened a store in Paris.", highlight=None):
    highlight = highlight or (0, len(text))
    return Passage(
        text,
        1.0,
        "a",
        "",
        "",
        "",
        "",
        0,
        len(text),
        0,
        similarity=similarity,
        highlight_start=None if answer_score is None else highlight[0],
        highlight_end=None if answer_score is None else highlight[1],
        answer_score=answer_score,
    )


@pytest.mark.parametrize(
    ("question", "found"),
    [
        ("When did Beyonce release Dangerously in Love in 2003?", {"beyonce", "dangerously", "love", "2003"}),
        ("What is the Merida Initiative?", {"merida", "initiative"}),
        ("Who won the cup?", set()),
        ("How many people died in the 1990s?", {"1990s"}),
        ("Where Is The U.S. Embassy?", {"u", "s", "embassy"}),  # capitalised stopwords are no names
        ("", set()),
    ],
)
def test_names_are_the_capitalised_words_and_numbers(question, found):
    assert names(question) == found


def test_answer_features_of_the_top_passage():
    # answer_score 1.4 = sentence cosine 0.4 + overlap 1.0 (apple, opened, store all in the sentence)
    p = _passage(0.7, 1.4, "Apple opened a store in Paris. It rained.", highlight=(0, 30))
    features = answer_features([p, _passage(0.1, 0.1)], "Where did Apple opened a store in 2009?")
    assert features == pytest.approx(
        {
            "similarity": 0.7,
            "sentence_cosine": 1.4 - 3 / 4,  # 2009 is asked too: 3 of the 4 terms are in the sentence
            "overlap": 3 / 4,
            "passage_overlap": 3 / 4,
            "names": 1 / 2,  # Apple, not 2009
            "negation": 0.0,
        }
    )
    assert answer_features([], "Who?") == {}
    unmarked = answer_features([_passage(0.9)], "Where did Apple open a store?")  # the passage stands in
    assert unmarked["sentence_cosine"] == 0.9 and unmarked["overlap"] == unmarked["passage_overlap"] == 2 / 3


def test_answerability_is_the_weighted_sum_of_the_features():
    p = _passage(0.7, 1.4)
    question = "Where did Apple open a store?"
    features = answer_features([p], question)
    assert set(features) == set(ANSWERABILITY)
    assert answerability([p], question) == pytest.approx(sum(ANSWERABILITY[f] * v for f, v in features.items()))
    assert answerability([], question) == 0.0


@pytest.mark.parametrize(
    ("passages", "question", "refused"),
    [
        ([], "Where did Apple open a store?", True),
        ([_passage(0.8, 1.9)], "Where did Apple open a store in Paris?", False),
        ([_passage(0.2, 0.3, "Oil prices rose on Monday.")], "Where did Apple open a store?", True),
        ([_passage(0.9)], "Where did Apple open a store?", False),  # not highlighted: the passage stands in
    ],
)
def test_not_in_articles(passages, question, refused):
    assert not_in_articles(passages, Settings(), question) is refused


def test_each_feature_moves_answerability_the_way_its_weight_says():
    """A fitted weight of the wrong sign would be a rule that rewards what it should punish: the signs are checked."""
    assert ANSWERABILITY["sentence_cosine"] > 0 and ANSWERABILITY["similarity"] >= 0
    assert ANSWERABILITY.get("negation", 0) <= 0
    asked = "Where did Apple open a store?"
    plain, negated = (answerability([_passage(0.7, 1.4)], q) for q in (asked, "Where did Apple not open a store?"))
    assert negated <= plain


def test_mark_answers_keeps_sentences_the_answer_stage_marked(tiny_corpus, tmp_path, fake_embedder):
    lib = Library.build([tiny_corpus], index_dir=tmp_path / "index", embedder=fake_embedder)
    passages = lib.search("When is the first 787 delivery?", k=3)
    assert passages[0].highlight == "The first delivery moves to 2009."  # the answer stage ran in search
    again = mark_answers(passages, fake_embedder, "something else entirely")
    assert again[0].highlight == passages[0].highlight


# --- Sentence vectors kept by the build, for the answer stage ---


def _sentence_rows(lib):
    """(chunk id, sentence start, end, chunk start, end) of every sentence of the live generation."""
    store = lib.store
    ids = store.chunk_ids()
    chunks, sentences = store.chunks(ids), store.sentences(ids)
    return [(i, s, e, chunks[i].start, chunks[i].end) for i in sentences for s, e in sentences[i][0]]


def test_build_keeps_every_chunks_sentences_and_a_rebuild_drops_the_old_ones(tiny_corpus, tmp_path, fake_embedder):
    lib = Library.build([tiny_corpus], index_dir=tmp_path / "index", embedder=fake_embedder)
    rows = _sentence_rows(lib)
    assert {r[0] for r in rows} == set(range(lib.store.manifest["chunks"]))
    assert all(c_start <= s < e <= c_end for _, s, e, c_start, c_end in rows)
    (tiny_corpus / "gm.txt").write_text("General Motors will cut 6,000 jobs. The plants close in May.\n")
    lib = Library.build([tiny_corpus], index_dir=tmp_path / "index", embedder=fake_embedder)
    rows = _sentence_rows(lib)
    assert {r[0] for r in rows} == set(lib.store.chunk_ids()), "sentences of a replaced chunk were left behind"
    assert len({r[0] for r in rows}) == lib.store.manifest["chunks"]
    [top] = lib.search("How many jobs will General Motors cut?", k=1)
    assert top.highlight == "General Motors will cut 6,000 jobs."


class _Counting:
    """Wraps an embedder and records the texts it is asked to encode."""

    def __init__(self, inner, passages=True):
        self.inner, self.calls, self.passages = inner, [], passages
        self.name, self.dim, self.max_tokens = inner.name, inner.dim, inner.max_tokens

    def encode_passages(self, texts, spans, progress=None):
        """The inner embedder's; with ``passages=False``, no sentence vectors, as a model that can't pool them."""
        if self.passages:
            return self.inner.encode_passages(texts, spans, progress)
        return self.inner.encode(texts, progress), [None] * len(texts)

    def token_spans(self, texts):
        return self.inner.token_spans(texts)

    def encode(self, texts, progress=None):
        self.calls.append(list(texts))
        return self.inner.encode(texts, progress)


def test_the_answer_stage_encodes_only_the_question(tiny_corpus, tmp_path, fake_embedder):
    emb = _Counting(fake_embedder)
    lib = Library.build([tiny_corpus], index_dir=tmp_path / "index", embedder=emb)
    emb.calls.clear()
    [top] = lib.search("When is the first 787 delivery?", k=1, highlight=True)
    assert top.highlight == "The first delivery moves to 2009."
    assert emb.calls == [["When is the first 787 delivery?"]]


def test_an_index_without_sentence_vectors_still_highlights(tiny_corpus, tmp_path, fake_embedder):
    # An embedder that can't pool sentences (and indexes built before sentence vectors were
    # kept): the answer stage encodes the candidates' sentences at question time instead.
    emb = _Counting(fake_embedder, passages=False)
    lib = Library.build([tiny_corpus], index_dir=tmp_path / "index", embedder=emb)
    assert _sentence_rows(lib) == []
    emb.calls.clear()
    [top] = lib.search("When is the first 787 delivery?", k=1, highlight=True)
    assert top.highlight == "The first delivery moves to 2009."
    assert len(emb.calls) == 2 and "The first delivery moves to 2009." in emb.calls[1]


def test_pooled_sentence_vectors_are_the_sentences_own(real_embedder):
    text = (
        "The Eiffel Tower was finished in 1889. Paris hosted the World's Fair that year. "
        "Penguins live almost only in the Southern Hemisphere."
    )
    spans = [(0, 38), (39, 80), (81, len(text))]
    vectors, [pooled] = real_embedder.encode_passages([text], [spans])
    assert real_embedder.pools_tokens
    assert abs(float(vectors[0] @ real_embedder.encode([text])[0]) - 1) < 1e-4  # the usual passage vector
    alone = real_embedder.encode([text[s:e] for s, e in spans])
    cos = pooled @ alone.T
    assert list(cos.argmax(axis=1)) == [0, 1, 2]  # each pooled vector is nearest its own sentence
    assert all(cos[i, i] > 0.6 for i in range(3)), cos
    vectors, pooled = real_embedder.encode_passages([], [])  # a rebuild that only removes articles
    assert vectors.shape == (0, real_embedder.dim) and pooled == []
