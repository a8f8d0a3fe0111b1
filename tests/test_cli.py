"""The `qa` command through its real console-script entry point."""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qa.cli import parser

from conftest import SEEDS, shows_k

QA = shutil.which("qa", path=str(Path(sys.executable).parent)) or "qa"


def run(*args, cwd=None, env=None):
    env = {**os.environ, **(env or {})}
    return subprocess.run([QA, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    index = tmp_path_factory.mktemp("cli") / "index"
    result = run("build", SEEDS, "--index", index)
    assert result.returncode == 0, result.stderr
    return index, result


def test_build_prints_a_summary(built):
    _, result = built
    assert "1 added" in result.stdout and "Full build: there was no index yet." in result.stderr
    assert "Traceback" not in result.stderr


def test_search_text_output(built):
    index, _ = built
    result = run(
        "search", "Who traveled to Mexico City to discuss the security framework?", "--index", index, "-k", "2"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[1] Blinken") and "answer: " in result.stdout and "[2]" in result.stdout


def test_search_json_output(built):
    index, _ = built
    result = run("search", "What policy did Biden cancel?", "--index", index, "-k", "3", "--json")
    answer = json.loads(result.stdout)
    assert answer["question"] == "What policy did Biden cancel?" and answer["k"] == 3
    assert answer["not_in_articles"] is False  # the same object as /api/search answers
    passages = answer["passages"]
    assert shows_k(passages, 3)
    for field in ("text", "score", "article_id", "title", "source", "date", "url", "start", "end", "chunk_id"):
        assert field in passages[0]
    assert any("Migrant Protection Protocols" in p["text"] for p in passages[:2])


def test_index_from_environment(built):
    index, _ = built
    result = run("info", "--json", env={"QA_INDEX_DIR": str(index)})
    info = json.loads(result.stdout)
    assert info["articles"] == 1 and info["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_info_text(built):
    index, _ = built
    result = run("info", "--index", index)
    assert result.returncode == 0 and "chunks:" in result.stdout and "MB" in result.stdout


def test_rebuild_with_nothing_changed(built):
    index, _ = built
    result = run("build", SEEDS, "--index", index)
    assert result.returncode == 0 and "0 added, 0 changed, 0 removed, 1 unchanged" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "anything", "--index", "{tmp}/none"], "No index at"),
        (["info", "--index", "{tmp}/none"], "No index at"),
        (["build", "{tmp}/missing", "--index", "{tmp}/idx"], "does not exist"),
        (["build", "{tmp}/emptydir", "--index", "{tmp}/idx"], "No readable articles"),
        (
            ["build", str(SEEDS), "--index", "{tmp}/idx", "--model", "no-such/model-anywhere"],
            "Can't load embedding model",
        ),
        (["search", "   ", "--index", "{tmp}/idx"], "question is empty"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, args, message):
    (tmp_path / "emptydir").mkdir()
    result = run(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_bad_setting_from_environment(tmp_path):
    result = run("info", "--index", tmp_path, env={"QA_CHUNK_TOKENS": "many"})
    assert result.returncode == 2 and "QA_CHUNK_TOKENS" in result.stderr


def test_every_command_and_option_has_help():
    def check(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    assert sub.description, f"{name} {sub_name} has no description"
                    check(sub, f"{name} {sub_name}")
            else:
                assert action.help, f"{name} {action.dest} has no help"

    check(parser(), "qa")


def test_module_entry_point(built):
    index, _ = built
    result = subprocess.run(
        [sys.executable, "-m", "qa.cli", "info", "--index", str(index)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "articles: 1" in result.stdout
