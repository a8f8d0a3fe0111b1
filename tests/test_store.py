"""Store: a generation that fails to open leaves no SQLite connection open behind it (review finding 21)."""

from __future__ import annotations

import json
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
    return index / (index / "CURRENT").read_text().strip()


def test_a_vectors_file_that_does_not_match_its_manifest_closes_the_connection(generation, tracked):
    manifest = json.loads((generation / "manifest.json").read_text())
    (generation / "manifest.json").write_text(json.dumps({**manifest, "chunks": manifest["chunks"] + 1}))
    with pytest.raises(CorruptIndexError, match="does not match its manifest"):
        Store.open(generation.parent)
    assert tracked and all(closed(c) for c in tracked)


def test_a_store_whose_first_query_fails_closes_the_connection(generation, tracked, monkeypatch):
    def damaged(self, sql, params=()):
        raise CorruptIndexError("meta.sqlite is damaged")

    monkeypatch.setattr(Store, "_rows", damaged)
    with pytest.raises(CorruptIndexError, match="damaged"):
        Store.open(generation.parent)
    assert tracked and all(closed(c) for c in tracked)
