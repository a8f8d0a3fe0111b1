"""Settings: one frozen dataclass with defaults, overridable by QA_* environment variables."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .errors import quoted

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SEARCH_MODES = ("hybrid", "dense", "lexical")
# Bounds that no model or collection needs more of: a chunk is cut to the model's own limit anyway.
MAX_CHUNK_TOKENS = 8192
MAX_OVERLAP_SENTENCES = 20
FUSIONS = ("convex", "rrf")
# The chat's cosine bar, replaced by the one "not in the articles" rule (issue 14): said once, not ignored silently.
RETIRED_MIN_SIMILARITY = (
    'QA_MIN_SIMILARITY is no longer read: every interface now decides "not in the articles" with one rule. '
    "Set QA_NO_ANSWER_THRESHOLD instead (higher refuses more; see the README's configuration table)."
)

log = logging.getLogger(__name__)


def offline() -> None:
    """No downloads, analytics or telemetry unless the user's environment asks for them.

    Called before sentence-transformers or Gradio is imported (they read these at import);
    ``HF_HUB_OFFLINE=0`` lets named models download.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@dataclass(frozen=True)
class Settings:
    """Everything that shapes an index or a search.

    Each field can be set by an environment variable named ``QA_`` + the field
    name in capitals, e.g. ``QA_MODEL=/models/e5-small`` or ``QA_CHUNK_TOKENS=200``.

    >>> Settings(chunk_tokens=64).chunk_tokens
    64
    """

    index_dir: Path = Path("index")
    model: str = DEFAULT_MODEL
    # Chunk budget in the model's own tokens (special tokens excluded), chosen by a sweep (docs/benchmarks.md).
    chunk_tokens: int = 192
    overlap_sentences: int = 1
    mode: str = "hybrid"
    # Hybrid fusion: "convex" (weighted z-scores) or "rrf" (reciprocal rank); convex measured better (benchmarks.md).
    fusion: str = "convex"
    # Weight of the dense side in the fusion (lexical gets 1 - this).
    dense_weight: float = 0.5
    # Reciprocal-rank fusion's constant (fusion="rrf"): the larger, the less rank 1 outweighs rank 10.
    rrf_k: int = 60
    # The best this many fused passages are re-ordered by their answering sentence (0: off), weighed answer_weight.
    answer_candidates: int = 20
    answer_weight: float = 1.0
    # "Not in the articles" below answering.answerability (fitted by bench/noanswer.py): the one rule of the chat,
    # the JSON route, `qa search` and `qa eval` (Library.not_in_articles).
    no_answer_threshold: float = 0.765
    # Optional sentence-transformers CrossEncoder (name or local path) re-scoring the top passages.
    reranker: str = ""
    # Dense index of each segment: "auto" (exact up to dense.EXACT_UP_TO vectors, IVF above), "flat", or
    # "ivf" with parameters ("ivf:nlist=4096,nprobe=32,rescore=100"). Applies to what a build writes.
    dense_index: str = "auto"
    # "index": search each segment's own index; "exact": scan every vector (slow at scale; for comparisons).
    dense_search: str = "index"
    # Where the index lives: "local" (index_dir: FAISS + SQLite) or "milvus" (qa.milvus; pip install -e ".[milvus]").
    backend: str = "local"
    # Milvus: a file path is Milvus Lite, in this process; http://host:19530 a server. "": index_dir/milvus.db.
    milvus_uri: str = ""
    milvus_token: str = ""  # a server's "user:password" or API key
    milvus_collection: str = "qa"  # names the collections: qa_meta, qa_data_000001, ...
    # Chunk and embed on a Ray cluster (qa.cluster; pip install -e ".[ray]"): "" no; "local" a cluster started
    # for the build; "auto" the running one this machine belongs to; or its address ("ray://head:10001").
    ray_address: str = ""
    ray_actors: int = 0  # models working at once on the cluster (0: one per CPU, or per GPU when it has them)
    # The app's "Add articles" panel refuses a file or text whose indexing would take longer (estimated).
    max_add_seconds: float = 600.0
    # Optional generated answers (qa.generate): an OpenAI-compatible server (Ollama, llama.cpp, vLLM) writes
    # an answer from the chat's passages. "" (the default): off, the chat quotes the articles only.
    llm_url: str = ""  # its base URL, e.g. http://localhost:11434/v1 (see qa.generate.completions_url)
    llm_model: str = ""  # the model it serves, e.g. llama3.2; needed with llm_url
    llm_api_key: str = field(default="", repr=False)  # sent as "Authorization: Bearer ..." when set
    llm_connect_timeout: float = 5.0  # seconds to connect before the chat gives up on a generated answer
    llm_read_timeout: float = 60.0  # seconds to wait for each piece of the answer (the first one included)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index_dir", Path(self.index_dir))
        if not 8 <= self.chunk_tokens <= MAX_CHUNK_TOKENS:
            raise ValueError(f"chunk_tokens must be from 8 to {MAX_CHUNK_TOKENS}, got {quoted(self.chunk_tokens)}")
        if not 0 <= self.overlap_sentences <= MAX_OVERLAP_SENTENCES:
            raise ValueError(
                f"overlap_sentences must be from 0 to {MAX_OVERLAP_SENTENCES}, got {quoted(self.overlap_sentences)}"
            )
        if self.mode not in SEARCH_MODES:
            raise ValueError(f"mode must be one of {', '.join(SEARCH_MODES)}, got {quoted(self.mode)}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {quoted(self.fusion)}")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ValueError(f"dense_weight must be between 0 and 1, got {quoted(self.dense_weight)}")
        if self.rrf_k < 0:
            raise ValueError(f"rrf_k must be 0 or more, got {quoted(self.rrf_k)}")
        if self.answer_candidates < 0 or self.answer_weight < 0:
            raise ValueError("answer_candidates and answer_weight must be 0 or more")
        if self.dense_index != "auto":
            from .dense import check_setting

            check_setting(self.dense_index)
        if self.dense_search not in ("index", "exact"):
            raise ValueError(f"dense_search must be index or exact, got {quoted(self.dense_search)}")
        from .backends import BACKENDS

        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {quoted(self.backend)}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", self.milvus_collection):
            raise ValueError(
                "milvus_collection must be letters, digits and _ (not first a digit), "
                f"got {quoted(self.milvus_collection)}"
            )
        if self.ray_actors < 0:
            raise ValueError(f"ray_actors must be 0 (as many as fit) or more, got {quoted(self.ray_actors)}")
        if self.max_add_seconds <= 0:
            raise ValueError(f"max_add_seconds must be above 0, got {quoted(self.max_add_seconds)}")
        self._check_llm()

    def _check_llm(self) -> None:
        """The generated-answer settings: a usable URL, a model with it, timeouts above 0."""
        if self.llm_url:
            from .generate import completions_url

            completions_url(self.llm_url)  # raises ValueError with what to write instead
            if not self.llm_model.strip():
                raise ValueError(
                    "QA_LLM_URL is set but QA_LLM_MODEL is not: name the model the server serves, "
                    "e.g. QA_LLM_MODEL=llama3.2 (`ollama list` shows them; llama.cpp's server takes any name)"
                )
        for name in ("llm_connect_timeout", "llm_read_timeout"):
            seconds = getattr(self, name)
            if not 0 < seconds <= 3600:
                raise ValueError(
                    f"{name} (QA_{name.upper()}) is seconds, above 0 and at most 3600, got {quoted(seconds)}"
                )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Defaults, then ``QA_*`` variables, then explicit non-None ``overrides``."""
        env = os.environ if env is None else env
        if env.get("QA_MIN_SIMILARITY"):
            log.warning(RETIRED_MIN_SIMILARITY)
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"QA_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            kind = type(getattr(cls(), f.name))
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ValueError(f"QA_{f.name.upper()}={raw!r} is not a valid {kind.__name__}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
