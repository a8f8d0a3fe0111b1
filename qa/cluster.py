"""Builds on a Ray cluster: reading, chunking and embedding as a Ray Data pipeline, writing in this process.

``qa build --ray [ADDRESS]`` (``QA_RAY_ADDRESS``): the build lists the collection here as any build does, then
hands the articles to embed to a Ray Data pipeline. Read tasks read their files (the cluster's machines
must see the same paths: a shared file system) and stream the wanted articles on to a pool of actors,
each holding one model, that chunk and embed them. The embedded articles stream back here, where the
chosen backend's writer writes them with the same incremental, crash-safe semantics as a build in one
process: a build that fails or is killed leaves the index as it was, and the next one reuses what was
written. Ray retries the tasks of a worker that dies, on a restarted actor. The only module that imports ray
(``pip install -e ".[ray]"``).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import QAError

if TYPE_CHECKING:
    from .config import Settings
    from .indexer import Collection, Embedded, Listed

log = logging.getLogger(__name__)

ARTICLES_PER_CALL = 32  # articles an actor chunks and embeds per call
CHARS_PER_ITEM = 500_000  # articles in memory are handed over in parts of about this much text


class ClusterError(QAError):
    """Ray is not installed, or the cluster can't be reached."""


@dataclass(frozen=True)
class Work:
    """What one read task reads: a file's wanted articles, or articles that are already in memory."""

    file: str | None
    paths: tuple[str, ...]
    ids: frozenset[str]
    articles: tuple = ()


def embedded(
    collection: Collection, todo: list[Listed], settings: Settings, model: str, failed: list
) -> Iterator[Embedded]:
    """``todo``'s articles chunked and embedded on the cluster, as ``indexer._embedded_here`` does here."""
    from .indexer import check_reread, vanished

    data = _start(settings.ray_address)
    actors, resources, device = _pool(settings.ray_actors)
    log.warning("embedding on Ray: %d actor(s) of %s on %s", actors, model, device)
    ds = data.from_items([{"work": w} for w in _work(collection, todo)])
    ds = ds.map_batches(_read, batch_size=1, num_cpus=0)  # light: reading streams on to the actors
    ds = ds.map_batches(
        _Embed,
        fn_constructor_kwargs={
            "model": model,
            "chunk_tokens": settings.chunk_tokens,
            "overlap_sentences": settings.overlap_sentences,
            "device": device,
        },
        batch_size=ARTICLES_PER_CALL,
        compute=data.ActorPoolStrategy(size=actors),
        **resources,
    )
    left = {a.id: a for a in todo}
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for step, read in zip(batch["step"], batch["read"], strict=True):
                for article_id, article_hash in read:
                    check_reread(article_hash, left.pop(article_id))
                yield step
    except Exception as e:
        if type(e).__module__.startswith("ray"):
            raise ClusterError(
                f"The build on Ray failed ({_first_line(e)}); the index is as it was. Run it again."
            ) from None
        raise
    vanished(left.values(), failed)


def _work(collection: Collection, todo: list[Listed]) -> list[Work]:
    """The read tasks: each file holding wanted articles once, or the articles in memory in parts."""
    wanted = {a.id for a in todo}
    if collection.listed is None:
        parts, part, chars = [], [], 0
        for article in collection.articles:
            if article.id in wanted:
                part.append(article)
                chars += len(article.text)
                if chars >= CHARS_PER_ITEM:
                    parts.append(part)
                    part, chars = [], 0
        parts += [part] if part else []
        return [Work(None, (), frozenset(a.id for a in p), tuple(p)) for p in parts]
    by_file: dict[Path, set[str]] = {}
    for a in todo:
        by_file.setdefault(a.file, set()).add(a.id)
    paths = tuple(str(p) for p in collection.paths)
    return [Work(str(f), paths, frozenset(ids)) for f, ids in by_file.items()]


def _read(batch: dict) -> Iterator[dict]:
    """A read task: its file's wanted articles, a few at a time (a .jsonl of a million streams)."""
    from . import articles

    for work in batch["work"]:
        if work.file is None:
            found = iter(work.articles)
        else:
            found = (a for a in articles.read(work.paths, [], only=[work.file], notices=[]) if a.id in work.ids)
        part = []
        for article in found:
            part.append(article)
            if len(part) == ARTICLES_PER_CALL:
                yield {"article": _objects(part)}
                part = []
        if part:
            yield {"article": _objects(part)}


class _Embed:
    """An actor: one model, chunking and embedding the articles it is given, as a build in one process does."""

    def __init__(self, model: str, chunk_tokens: int, overlap_sentences: int, device: str) -> None:
        import torch

        from .config import Settings, offline
        from .embedding import Embedder

        offline()
        torch.set_num_threads(1)  # one CPU per actor: Ray gave it one
        self.embedder = Embedder(model, device=device)
        self.settings = Settings(chunk_tokens=chunk_tokens, overlap_sentences=overlap_sentences)

    def __call__(self, batch: dict) -> dict:
        from .indexer import Embedded, _chunk_each, _embed_articles

        _die_once_for_tests()
        found = list(batch["article"])
        kept, pieces, lost = _chunk_each(found, self.settings, self.embedder)
        tried = sum(len(cs) for cs in pieces)
        kept, pieces, (vectors, sentences), lost_embedding = _embed_articles(kept, pieces, self.embedder, None)
        step = Embedded(kept, pieces, vectors, sentences, lost + lost_embedding, sum(len(a.text) for a in found), tried)
        return {"step": _objects([step]), "read": _objects([[(a.id, a.hash) for a in found]])}


def _objects(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _start(address: str):
    """Ray Data, with this process joined to the cluster at ``address`` ("local": one started here)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ClusterError('Builds on Ray need ray: pip install -e ".[ray]". Or build without --ray.') from None
    if not ray.is_initialized():
        try:
            warnings.filterwarnings("ignore", message="Ray Client connection timed out")  # the error says it
            ray.init(
                address=None if address == "local" else address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                configure_logging=True,
            )
        except Exception as e:  # ConnectionError, RuntimeError, and a plain Exception when a node won't start
            raise ClusterError(
                f"The Ray cluster at {address} can't be reached ({_first_line(e)}). Start it (`ray start --head`), "
                "give its address (--ray ray://HOST:10001, or auto on one of its machines), or --ray local."
            ) from None
    for name in ("ray", "ray.data"):  # its notices of how it runs: qa says what matters
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # qa's own bar follows the build
    context.print_on_execution_start = False
    return ray.data


def _pool(wanted: int) -> tuple[int, dict, str]:
    """How many actors, the resources of each, and the device their models run on: one per GPU when
    the cluster has GPUs, else one per CPU; ``wanted`` (above 0) overrides the count."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    if gpus:
        return wanted or gpus, {"num_gpus": 1}, "cuda"
    return wanted or max(1, cpus), {"num_cpus": 1}, "cpu"


def _die_once_for_tests() -> None:
    """Test hook: with QA_TEST_RAY_DIE_ONCE=FILE, the first call on the cluster kills its worker
    (creating FILE), so a test sees the build survive a worker that dies."""
    marker = os.environ.get("QA_TEST_RAY_DIE_ONCE")
    if marker and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]
