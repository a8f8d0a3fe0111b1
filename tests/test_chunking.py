"""Sentence splitting and chunking: offsets, budgets, overlap, edge cases."""

import pytest

from qa.chunking import chunk, split_sentences

from conftest import FakeEmbedder

tokenize = FakeEmbedder().token_spans


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("", []),
        ("   \n\n ", []),
        ("One sentence only", ["One sentence only"]),
        ("First one. Second one! Third one?", ["First one.", "Second one!", "Third one?"]),
        ("Mr. Smith went to Washington. He left.", ["Mr. Smith went to Washington.", "He left."]),
        ("U.S. officials met on Friday. Talks went well.", ["U.S. officials met on Friday.", "Talks went well."]),
        ("He said “stop.” Then he left.", ["He said “stop.”", "Then he left."]),
        ("The price rose 3.5 percent. It fell later.", ["The price rose 3.5 percent.", "It fell later."]),
        ("Line one\nLine two", ["Line one", "Line two"]),
        ("Café déjà vu. Ünïcödé 東京 text.", ["Café déjà vu.", "Ünïcödé 東京 text."]),
        ("Wait... what? yes, lowercase continues.", ["Wait... what? yes, lowercase continues."]),
    ],
)
def test_split_sentences(text, sentences):
    assert [text[s:e] for s, e in split_sentences(text)] == sentences


def test_empty_text_has_no_chunks():
    assert chunk("a", "", tokenize) == []
    assert chunk("a", " \n ", tokenize) == []


def test_one_sentence_is_one_chunk():
    [c] = chunk("a", "Just one sentence here.", tokenize, budget=50)
    assert (c.text, c.start, c.end, c.index) == ("Just one sentence here.", 0, 23, 0)


TEXTS = [
    "Alpha beta gamma. Delta epsilon zeta! Eta theta iota? Kappa lambda mu.\nNu xi omicron. Pi rho sigma.",
    "Ünïcödé cafés 東京 are fine. Emoji 🎉 too — and “quotes”. " * 20,
    "word " * 500,  # one sentence far longer than the budget
    "Short. " * 100,
]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("budget, overlap", [(8, 0), (16, 1), (40, 2)])
def test_chunks_slice_back_exactly_and_fit_the_budget(text, budget, overlap):
    chunks = chunk("a", text, tokenize, budget=budget, overlap=overlap)
    assert chunks
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert c.text == c.text.strip()
        assert c.tokens == len(tokenize([c.text])[0]) <= budget
    # Every sentence's characters are covered by some chunk.
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    for s, e in split_sentences(text):
        assert all(i in covered for i in range(s, e) if not text[i].isspace())
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_chunks_never_cut_a_sentence_that_fits():
    text = "One two three four. Five six seven eight. Nine ten eleven twelve. Thirteen fourteen fifteen."
    ends = {e for _, e in split_sentences(text)}
    starts = {s for s, _ in split_sentences(text)}
    for c in chunk("a", text, tokenize, budget=10, overlap=1):
        assert c.start in starts and c.end in ends


def test_overlap_repeats_whole_sentences():
    text = "Ann ran far. Bob sat down. Cal ate it. Dan was out. Eve came."
    chunks = chunk("a", text, tokenize, budget=8, overlap=1)
    assert [c.text for c in chunks] == [
        "Ann ran far. Bob sat down.",
        "Bob sat down. Cal ate it.",
        "Cal ate it. Dan was out.",
        "Dan was out. Eve came.",
    ]
    assert [c.text for c in chunk("a", text, tokenize, budget=8, overlap=0)] == [
        "Ann ran far. Bob sat down.",
        "Cal ate it. Dan was out.",
        "Eve came.",
    ]


def test_long_sentence_is_split_at_token_boundaries():
    text = "supercalifragilistic " * 30
    chunks = chunk("a", text.strip(), tokenize, budget=7)
    assert [c.tokens for c in chunks] == [7, 7, 7, 7, 2]
    assert all(c.text.split() == ["supercalifragilistic"] * c.tokens for c in chunks)


def test_real_tokenizer_keeps_chunks_within_model_limit(real_embedder):
    """No chunk may be longer than the model reads, or the model would silently truncate it."""
    text = (
        "Antidisestablishmentarianism-like neologisms (e.g. floccinaucinihilipilification) multiply wordpieces; " * 40
    ) + "End."
    chunks = chunk("a", text, real_embedder.token_spans, budget=real_embedder.max_tokens)
    assert len(chunks) > 1
    tok = real_embedder._tokenizer
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert len(tok(c.text)["input_ids"]) <= real_embedder.max_tokens + 2
