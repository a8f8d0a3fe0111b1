"""A damaged index directory is a one-line error that names the file and the fix, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qa import CorruptIndexError, Library
from qa.store import Store, current_generation

from conftest import ROOT

QA_SEARCH = [sys.executable, "-m", "qa.cli", "search", "Who traveled to Mexico City?", "--index"]


def qa_search(index: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    return subprocess.run([*QA_SEARCH, str(index)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def seed_copy(seed_library, tmp_path) -> Path:
    """A private copy of the seed index (built with the real model), to damage."""
    index = tmp_path / "index"
    shutil.copytree(seed_library.settings.index_dir, index, ignore=shutil.ignore_patterns(".lock"))
    return index


@pytest.mark.parametrize("content", [b"\xff\xfe\x00gen-000001", b"gen-../../etc", b""])
def test_a_current_file_that_names_no_generation(seed_copy, content):
    (seed_copy / "CURRENT").write_bytes(content)
    assert current_generation(seed_copy) is None
    with pytest.raises(CorruptIndexError, match=r"CURRENT does not name a generation.*qa build --full"):
        Store.open(seed_copy)
    run = qa_search(seed_copy)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("error: ") and "CURRENT does not name a generation" in run.stderr


def test_a_current_that_is_a_folder(seed_copy):
    (seed_copy / "CURRENT").unlink()
    (seed_copy / "CURRENT").mkdir()
    with pytest.raises(CorruptIndexError, match="CURRENT does not name a generation"):
        Store.open(seed_copy)


def test_damaged_metadata_without_checksums_is_a_clear_error(seed_copy):
    """Opening reads no checksums: damage to the database is found when read, and said so."""
    db = seed_copy / current_generation(seed_copy).split("/")[0] / "meta.sqlite"
    data = bytearray(db.read_bytes())
    for page in range(4096, len(data), 4096):  # every page but the first (the header stays valid)
        for i in range(page + 8, min(page + 4096, len(data)), 7):
            data[i] ^= 0x5A
    db.write_bytes(data)
    with pytest.raises(CorruptIndexError, match=r"meta\.sqlite.*(damaged|can't be read).*qa build --full"):
        with Library.open(seed_copy) as lib:
            lib.search("Who traveled to Mexico City?", k=3, highlight=True)
    run = qa_search(seed_copy)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert "meta.sqlite" in run.stderr and "qa build --full" in run.stderr
