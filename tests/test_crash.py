"""Crash safety and concurrency: killed builds, two builds at once, damaged files, searching during rebuilds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qa import CorruptIndexError, IndexLockedError, Library, NoIndexError, Settings
from qa.cli import main as cli_main
from qa.store import current_generation

from conftest import ROOT, FakeEmbedder

# Searches with the fake model stay literal (no fusion or answer-stage re-ordering, which others tune).
FAKE = Settings(mode="lexical", answer_candidates=0)

BUILD_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from conftest import FakeEmbedder
from qa import Library
lib = Library.build([{folder!r}], index_dir={index!r}, embedder=FakeEmbedder() if {fake} else None, full={full})
print(lib.last_build.summary(), flush=True)
"""


def start_build(folder: Path, index: Path, pause_at: str, fake: bool = True, full: bool = False) -> subprocess.Popen:
    """A `Library.build` in another process that stops at ``pause_at``; returns once it is there."""
    code = BUILD_SCRIPT.format(tests=str(ROOT / "tests"), folder=str(folder), index=str(index), fake=fake, full=full)
    env = {**os.environ, "QA_TEST_PAUSE_AT": pause_at}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.strip() == f"qa-test-paused-at {pause_at}":
            return proc
    proc.wait()
    raise AssertionError(f"build ended (exit {proc.returncode}) before reaching {pause_at}")


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def change_collection(folder: Path) -> None:
    (folder / "boeing.txt").unlink()
    (folder / "apple.md").write_text("# Apple in Paris\nApple closed its Paris store for a week of repairs.\n")
    (folder / "ford.txt").write_text("Ford sold Jaguar and Land Rover to Tata Motors.\n")


def answers(lib: Library) -> dict[str, str | None]:
    questions = ("When is the Dreamliner delivered?", "Who bought Jaguar?", "What did Apple do in Paris?")
    return {q: next((p.article_id for p in lib.search(q, k=1)), None) for q in questions}


KILLS = [  # (stage, full): an update changes the live data directory, a full build writes a new one
    *[(stage, False) for stage in ("embedding", "batch", "writing", "swapped")],
    *[(stage, True) for stage in ("embedding", "batch", "writing", "renamed", "swapped")],
]


@pytest.mark.parametrize(("stage", "full"), KILLS, ids=[f"{'full' if f else 'update'}-{s}" for s, f in KILLS])
def test_build_killed_at_any_stage_leaves_a_working_index(tiny_corpus, tmp_path, stage, full):
    index = tmp_path / "index"
    before = Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE)
    old_answers, old_gen = answers(before), current_generation(index)
    change_collection(tiny_corpus)
    kill(start_build(tiny_corpus, index, stage, full=full))

    lib = Library.open(index, embedder=FakeEmbedder(), settings=FAKE)
    if stage == "swapped":  # killed after the new generation went live: that one is whole
        assert current_generation(index) != old_gen
        assert answers(lib)["Who bought Jaguar?"] == "articles/ford.txt"
    else:
        assert current_generation(index) == old_gen
        assert answers(lib) == old_answers
    assert lib.store.check() == []
    after = Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE)
    assert after.last_build.chunks_total == 3
    if stage in ("batch", "writing") and not full:  # what the killed build wrote out is reused
        assert after.last_build.resumed == 2 and after.last_build.chunks_embedded == 0
    assert answers(after)["Who bought Jaguar?"] == "articles/ford.txt"
    assert all(p.article_id != "articles/boeing.txt" for p in after.search("Dreamliner", k=5))
    assert after.store.check() == []
    assert not list(index.glob(".next-*")) and len(list(index.glob("data-*"))) <= 2


def test_a_killed_full_build_resumes_from_its_batches(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE)
    kill(start_build(tiny_corpus, index, "writing", full=True))
    assert len(list(index.glob(".next-data-*"))) == 1
    after = Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE, full=True)
    assert after.last_build.resumed == 3 and after.last_build.chunks_embedded == 0
    assert "resumed: 3 more embedded by an interrupted build" in after.last_build.summary()
    assert answers(after)["When is the Dreamliner delivered?"] == "articles/boeing.txt"
    assert after.store.check() == [] and not list(index.glob(".next-*"))


def test_build_killed_while_embedding_with_real_model(tiny_corpus, tmp_path, real_embedder):
    index = tmp_path / "index"
    before = Library.build([tiny_corpus], index_dir=index, embedder=real_embedder)
    old_answers = answers(before)
    change_collection(tiny_corpus)
    kill(start_build(tiny_corpus, index, "embedding", fake=False))
    assert answers(Library.open(index, embedder=real_embedder)) == old_answers
    after = Library.build([tiny_corpus], index_dir=index, embedder=real_embedder)
    assert (after.last_build.added, after.last_build.changed, after.last_build.removed) == (1, 1, 1)
    assert answers(after)["Who bought Jaguar?"] == "articles/ford.txt"


def test_second_build_at_once_stops_with_a_clear_message(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE)
    change_collection(tiny_corpus)
    first = start_build(tiny_corpus, index, "writing")
    try:
        with pytest.raises(IndexLockedError) as e:
            Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE)
        assert f"is being built by process {first.pid}. Wait for that build to finish" in str(e.value)
    finally:
        kill(first)
    # The lock dies with its holder: the next build runs.
    assert Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE).last_build.added == 1


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "missing":
        path.unlink()
    elif how == "bytes flipped":  # same size, damage in the middle: only a checksum sees it
        for i in range(len(data) // 2, len(data) // 2 + 64):
            data[i] ^= 0xA5
        path.write_bytes(data)
    elif how == "garbage":
        path.write_bytes(os.urandom(len(data)))


FILES = ["meta.sqlite", "seg-000001.faiss", "seg-000001.ids"]
DAMAGE = ["truncated", "empty", "missing", "garbage"]


def data_dir(index: Path) -> Path:
    return index / current_generation(index).split("/")[0]


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("name", FILES)
def test_damaged_file_gives_corrupt_index_error_that_says_rebuild(tiny_corpus, tmp_path, name, how):
    index = tmp_path / "index"
    Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE)
    damage(data_dir(index) / name, how)
    with pytest.raises(CorruptIndexError, match=r"Rebuild it with `qa build --full --index "):
        Library.open(index, embedder=FakeEmbedder(), settings=FAKE)
    # An ordinary build notices, says why, and rebuilds everything.
    lib = Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE)
    assert lib.last_build.full_reason.startswith("the old index is unusable")
    assert lib.search("Who queued in Paris?", k=1)[0].article_id == "articles/apple.md"


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(data)


def where_in_database(path: Path, spot: str) -> int:
    data = path.read_bytes()
    if spot == "article text":
        return data.index(b"Dreamliner")
    page = int.from_bytes(data[16:18], "big")
    return page  # the first byte of page 2: its b-tree page type


CHECKED = [  # (file, where): a flipped byte that opening does not read, and `qa check` must find
    ("seg-000001.faiss", "middle"),
    ("seg-000001.ids", "end"),
    ("seg-000001.f16", "middle"),
    ("meta.sqlite", "article text"),
    ("meta.sqlite", "page header"),
]


@pytest.mark.parametrize(("name", "spot"), CHECKED)
def test_qa_check_finds_a_flipped_byte_in_each_kind_of_file(tiny_corpus, tmp_path, capsys, name, spot):
    index = tmp_path / "index"
    ivf = Settings(mode="lexical", answer_candidates=0, dense_index="ivf:nlist=1,rescore=10")  # with a .f16
    Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=ivf)
    path = data_dir(index) / name
    size = path.stat().st_size
    at = {"middle": size // 2, "end": size - 1}.get(spot) or where_in_database(path, spot)
    assert Library.open(index, embedder=FakeEmbedder(), settings=ivf).check() == []
    flip(path, at)
    try:  # damage that opening reads (a page it needs) is found there already
        problems = Library.open(index, embedder=FakeEmbedder(), settings=ivf).check()
    except CorruptIndexError as e:
        problems = [str(e)]
    assert problems and all(str(path) in p for p in problems), problems
    assert cli_main(["check", "--index", str(index)]) == 1
    out = capsys.readouterr()
    assert str(path) in out.out and "qa build --full" in out.out


def test_qa_check_of_a_sound_index_says_so(tiny_corpus, tmp_path, capsys):
    index = tmp_path / "index"
    Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE)
    assert cli_main(["check", "--index", str(index)]) == 0
    assert "no problems" in capsys.readouterr().out


@pytest.mark.parametrize("content", ["", "gen-\n", "../../etc\n", "gen-999999\n"])
def test_bad_current_pointer_is_a_clear_error(tiny_corpus, tmp_path, content):
    index = tmp_path / "index"
    Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE)
    (index / "CURRENT").write_text(content)
    with pytest.raises(CorruptIndexError, match="Rebuild it with"):
        Library.open(index, embedder=FakeEmbedder(), settings=FAKE)


def test_missing_index_is_not_called_corrupt(tmp_path):
    with pytest.raises(NoIndexError, match="Run `qa build"):
        Library.open(tmp_path / "nothing", embedder=FakeEmbedder(), settings=FAKE)


def test_damaged_file_through_the_cli_and_real_model_is_one_line_not_a_crash(
    tiny_corpus, tmp_path, capsys, real_embedder
):
    index = tmp_path / "index"
    Library.build([tiny_corpus], index_dir=index, embedder=real_embedder)
    damage(data_dir(index) / "seg-000001.faiss", "truncated")
    code = "import sys; from qa.cli import main; sys.exit(main(sys.argv[1:]))"
    run = subprocess.run(
        [sys.executable, "-c", code, "search", "Who queued?", "--index", str(index)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.startswith("error: ") and "Traceback" not in run.stderr
    assert "seg-000001.faiss is truncated or changed" in run.stderr and "qa build --full" in run.stderr
    assert cli_main(["build", str(tiny_corpus), "--index", str(index)]) == 0
    assert "Full build: the old index is unusable" in capsys.readouterr().err


def test_app_keeps_serving_the_old_generation_when_the_new_one_is_damaged(tiny_corpus, tmp_path):
    index = tmp_path / "index"
    lib = Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE)
    old_gen = lib.info().generation
    (tiny_corpus / "ford.txt").write_text("Ford sold Jaguar and Land Rover to Tata Motors.\n")
    Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE)
    damage(data_dir(index) / "seg-000002.faiss", "truncated")  # the segment the new generation added
    assert lib.search("Who queued in Paris?", k=1)[0].article_id == "articles/apple.md"
    assert lib.info().generation == old_gen


def test_a_rebuild_with_another_model_brings_that_model_in(tiny_corpus, tmp_path, real_embedder):
    """`qa build --full --model X` while the app serves the index: the app must embed questions with X
    from then on (with the old model, the 64-dimension question can't even search 384 dimensions)."""
    index = tmp_path / "index"
    lib = Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE)
    assert lib.embedder.name == "fake-bow"
    report = Library.build([tiny_corpus], index_dir=index, embedder=real_embedder).last_build
    assert "model changed" in report.full_reason
    hit = lib.search("Where did Apple open a store?", k=1)[0]
    assert hit.article_id == "articles/apple.md"
    assert lib.embedder.name == real_embedder.name and lib.settings.model == real_embedder.name


def test_a_rebuild_with_a_model_that_wont_load_keeps_the_old_index_serving(tiny_corpus, tmp_path, caplog):
    class Unloadable(FakeEmbedder):
        name = str(tmp_path / "no-such-model")

    index = tmp_path / "index"
    lib = Library.build([tiny_corpus], index_dir=index, embedder=FakeEmbedder(), settings=FAKE)
    old_gen = lib.info().generation
    Library.build([tiny_corpus], index_dir=index, embedder=Unloadable())
    assert lib.search("Who queued in Paris?", k=1)[0].article_id == "articles/apple.md"
    assert lib.info().generation == old_gen and lib.embedder.name == "fake-bow"
    assert "still serving" in caplog.text and "no-such-model" in caplog.text


def search_until(lib: Library, stop: threading.Event, seen: set, errors: list) -> None:
    while not stop.is_set():
        try:
            hits = lib.search("Who queued in Paris?", k=3)
            assert hits[0].article_id == "articles/apple.md", hits[0]
            seen.add(lib.info().generation)
        except Exception as e:  # noqa: BLE001 - every failure is what this test counts
            errors.append(repr(e))


@pytest.mark.parametrize("real", [False, True], ids=["fake-model", "real-model"])
def test_searching_thread_sees_no_error_while_another_rebuilds(tiny_corpus, tmp_path, real, request):
    embedder = request.getfixturevalue("real_embedder") if real else FakeEmbedder()
    index = tmp_path / "index"
    settings = None if real else FAKE
    lib = Library.build([tiny_corpus], index_dir=index, embedder=embedder, settings=settings)
    reader = Library.open(index, embedder=embedder, settings=settings)
    stop, seen, errors = threading.Event(), set(), []
    threads = [threading.Thread(target=search_until, args=(r, stop, seen, errors)) for r in (lib, reader)]
    for t in threads:
        t.start()
    try:
        builds = 6 if real else 30
        for n in range(builds):
            extra = tiny_corpus / "extra.txt"
            if n % 2:
                extra.unlink()
            else:
                extra.write_text(f"Extra story {n}: heavy rain closed schools in Leeds.\n")
            Library.build([tiny_corpus], index_dir=index, embedder=embedder, settings=settings)
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert errors == []
    assert len(seen) >= 3  # the searchers really moved from generation to generation
    assert reader.info().generation == current_generation(index)
