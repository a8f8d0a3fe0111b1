"""Builds on a real local Ray cluster (2 CPUs, started here): the same index as a build in one process,
through a worker that dies, incremental as any build; and the errors of a cluster that isn't there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import ray

from qa import Library, Settings
from qa.cli import main as cli_main

from conftest import ROOT, TINY, wikinews_records
from tests.test_crash import change_collection
from tests.test_library_add import contents


def test_no_cluster_to_join_is_one_line_that_says_what_to_do(tiny_corpus, tmp_path):
    """`--ray auto` where no cluster runs (Ray looks for one under its RAY_TMPDIR: a fresh one here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="qa-ray-", dir="/tmp")  # short: Ray's socket paths live in it
    command = ["build", str(tiny_corpus), "--index", str(tmp_path / "index"), "--ray", "auto", "--no-app"]
    done = subprocess.run(
        [sys.executable, "-m", "qa.cli", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "error: The Ray cluster at auto can't be reached (" in done.stderr
    assert "Start it (`ray start --head`)" in done.stderr and not (tmp_path / "index" / "CURRENT").exists()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local cluster of 2 CPUs whose first embedding call kills its worker (QA_TEST_RAY_DIE_ONCE)."""
    died = tmp_path_factory.mktemp("ray") / "died"
    own = tempfile.mkdtemp(prefix="qa-ray-", dir="/tmp")  # its own Ray folder: another suite's cluster is not ours
    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = own
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"QA_TEST_RAY_DIE_ONCE": str(died)}},
    )
    try:
        yield died
    finally:
        ray.shutdown()
        if previous is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = previous
        shutil.rmtree(own, ignore_errors=True)


@pytest.fixture
def articles(tmp_path):
    folder = tmp_path / "articles"
    folder.mkdir()
    for name, text in TINY.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "news.jsonl").write_text("\n".join(wikinews_records(12)) + "\n", encoding="utf-8")
    return folder


def vectors(index) -> dict:
    store = Library.open(index).store
    ids = store.chunk_ids()
    rows = store.chunks(ids)
    return {(rows[i].article_id, rows[i].start): v for i, v in zip(ids, store.vectors(ids))}


def test_a_build_on_ray_equals_one_in_process_through_a_dying_worker_and_updates_incrementally(
    cluster, articles, tmp_path, real_embedder
):
    on_ray = Settings(index_dir=tmp_path / "ray", ray_address="auto")
    report = Library.build([articles], settings=on_ray).last_build
    assert cluster.exists(), "no worker died: the test hook did not run"
    Library.build([articles], index_dir=tmp_path / "here", embedder=real_embedder)
    assert contents(tmp_path / "ray") == contents(tmp_path / "here")
    assert report.added == 15 and report.chunks_embedded == report.chunks_total > 15
    ours, theirs = vectors(tmp_path / "ray"), vectors(tmp_path / "here")
    assert ours.keys() == theirs.keys()
    assert max(float(np.abs(ours[k] - theirs[k]).max()) for k in ours) < 1e-4  # the same model, other batches

    change_collection(articles)  # one removed, one changed, one added: only two embedded, on the cluster
    again = Library.build([articles], settings=on_ray).last_build
    assert (again.added, again.changed, again.removed, again.chunks_embedded) == (1, 1, 1, 2)
    Library.build([articles], index_dir=tmp_path / "here", embedder=real_embedder)
    assert contents(tmp_path / "ray") == contents(tmp_path / "here")
    hit = Library.open(tmp_path / "ray", embedder=real_embedder).search("Who bought Jaguar?", k=1)[0]
    assert hit.article_id == "articles/ford.txt"


def test_qa_build_on_ray_from_the_command_line(cluster, articles, tmp_path, capsys):
    (articles / "news.jsonl").unlink()
    assert cli_main(["build", str(articles), "--index", str(tmp_path / "index"), "--ray", "auto", "--no-app"]) == 0
    assert "3 added" in capsys.readouterr().out
    assert cli_main(["info", "--json", "--index", str(tmp_path / "index")]) == 0
    assert json.loads(capsys.readouterr().out)["chunks"] == 3
