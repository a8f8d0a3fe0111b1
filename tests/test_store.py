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


def test_concurrent_reads_share_a_few_connections_and_close_with_the_store(generation, tracked, monkeypatch):
    """Searches in several threads read through up to READERS connections of the store's own at once and get
    what one thread gets; close closes the idle ones at once, one in use when its query ends."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from qa import store as store_mod

    lib = Library.open(generation.parent, embedder=FakeEmbedder())
    store = lib.store
    questions = ["store", "Apple", "Paris", "opens", "phone", "music", "store Paris", "Apple store"] * 4
    alone = [lib.search(q, k=3) for q in questions]
    together, reader = threading.Barrier(store_mod.READERS), store._reader

    def held():  # the first READERS reads go on only once READERS threads each hold a connection (a fifth
        db = reader()  # gets one only after one of them has set done and run its query)
        if not getattr(together, "done", False):
            try:
                together.wait(timeout=10)
            except threading.BrokenBarrierError:  # they can't: this search, and each after it, fails
                store._hand_back(db)
                raise
            together.done = True
        return db

    monkeypatch.setattr(store, "_reader", held)
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda q: lib.search(q, k=3), questions)) == alone
    assert getattr(together, "done", False) and len(tracked) == store_mod.READERS
    monkeypatch.undo()
    in_use = store._reader()  # as a query in another thread holds it
    store.close()
    assert [closed(c) for c in tracked] == [c is not in_use for c in tracked]
    store._hand_back(in_use)  # its query ended
    assert all(closed(c) for c in tracked)
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        lib.search("store")
