"""Store: a generation that fails to open leaves no SQLite connection open behind it (review finding 21)."""

from __future__ import annotations

import sqlite3

import pytest

from qa import Library
from qa.errors import CorruptIndexError
from qa.store import Store

from conftest import FakeEmbedder


class Tracked(sqlite3.Connection):
    opened: list[Tracked] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        Tracked.opened.append(self)


def closed(connection: sqlite3.Connection) -> bool:
    try:
        connection.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


@pytest.fixture
def tracked(monkeypatch):
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **kw: connect(*a, **kw, factory=Tracked))
    Tracked.opened.clear()
    return Tracked.opened


@pytest.fixture
def generation(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder()).close()
    return index / (index / "CURRENT").read_text().split("/")[0]


def test_a_truncated_vectors_file_closes_the_connection(generation, tracked):
    segment = next(generation.glob("seg-*.faiss"))
    segment.write_bytes(segment.read_bytes()[:-10])
    with pytest.raises(CorruptIndexError, match="seg-000001.faiss is truncated or changed"):
        Store.open(generation.parent)
    assert tracked and all(closed(c) for c in tracked)


def test_a_store_whose_first_query_fails_closes_the_connection(generation, tracked, monkeypatch):
    def damaged(self, sql, params=()):
        raise CorruptIndexError("meta.sqlite is damaged")

    monkeypatch.setattr(Store, "_rows", damaged)
    with pytest.raises(CorruptIndexError, match="damaged"):
        Store.open(generation.parent)
    assert tracked and all(closed(c) for c in tracked)
