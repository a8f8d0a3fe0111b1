"""Settings: one frozen dataclass with defaults, overridable by QA_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SEARCH_MODES = ("hybrid", "dense", "lexical")


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
    # Chunk budget in the model's own tokens (special tokens excluded); see docs/benchmarks.md.
    chunk_tokens: int = 128
    overlap_sentences: int = 1
    mode: str = "hybrid"
    batch_size: int = 64
    # Fusion weight of the dense ranking in reciprocal-rank fusion (lexical gets 1 - this).
    dense_weight: float = 0.5
    rrf_k: int = 60

    def __post_init__(self) -> None:
        object.__setattr__(self, "index_dir", Path(self.index_dir))
        if self.chunk_tokens < 8:
            raise ValueError(f"chunk_tokens must be at least 8, got {self.chunk_tokens}")
        if self.overlap_sentences < 0:
            raise ValueError("overlap_sentences must be 0 or more")
        if self.mode not in SEARCH_MODES:
            raise ValueError(f"mode must be one of {', '.join(SEARCH_MODES)}, got {self.mode!r}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Defaults, then ``QA_*`` variables, then explicit non-None ``overrides``."""
        env = os.environ if env is None else env
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
