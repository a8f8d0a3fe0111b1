"""`qa build` handing its build to the app that serves the index (qa.handoff, qa.web.builds, POST /api/build)."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa import HandOffError, Library, NoArticlesError, QAError, Settings, handoff
from qa.store import current_generation
from qa.web import builds

from conftest import ROOT, SEEDS, FakeEmbedder, free_port, wikinews_records

# A `qa build` that can't import torch or sentence-transformers: it must not load the model.
NO_MODEL = (
    "import sys; sys.modules['torch'] = sys.modules['sentence_transformers'] = None; "
    "from qa.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_the_command_side_imports_only_the_standard_library():
    """`qa build` must start fast: qa.handoff alone (without qa/__init__.py) pulls in no numpy, faiss or web stack."""
    code = (
        "import sys, types; qa = types.ModuleType('qa'); qa.__path__ = [sys.argv[1]]; sys.modules['qa'] = qa\n"
        "for heavy in ('numpy', 'faiss', 'torch', 'fastapi', 'gradio', 'yaml', 'tqdm'): sys.modules[heavy] = None\n"
        "import qa.handoff\n"
        "print(sorted(m for m in sys.modules if m.startswith('qa.')))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "qa")], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["['qa.backends',", "'qa.config',", "'qa.errors',", "'qa.handoff']"]


def test_announce_writes_a_private_file_and_removes_it(tmp_path):
    with builds.announce(tmp_path, "0.0.0.0", 7860, "secret") as written:
        assert written
        path = tmp_path / handoff.SERVER_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        server = handoff.find(tmp_path)
        assert server == handoff.Server(os.getpid(), "127.0.0.1", 7860, "secret")
        assert server.url == "http://127.0.0.1:7860"
    assert not path.exists()


def test_announce_leaves_the_file_of_an_app_started_since(tmp_path):
    with builds.announce(tmp_path, "127.0.0.1", 7860, "mine"):
        with builds.announce(tmp_path, "::", 7861, "theirs"):
            pass  # the second app stops first: its file goes, ours was replaced and is gone too
        with builds.announce(tmp_path, "::", 7862, "theirs"):
            server = handoff.find(tmp_path)
            assert (server.host, server.url, server.token) == ("::1", "http://[::1]:7862", "theirs")
        other = {"pid": os.getpid(), "host": "h", "port": 1, "token": "x"}
        (tmp_path / handoff.SERVER_FILE).write_text(json.dumps(other))
    assert (tmp_path / handoff.SERVER_FILE).exists()  # not ours: left alone


def test_announce_without_a_writable_folder_warns_and_goes_on(tmp_path, caplog):
    blocker = tmp_path / "index"
    blocker.write_text("a file where the folder should be")
    with builds.announce(blocker, "127.0.0.1", 7860, "t") as written:
        assert not written
    assert "load the model itself" in caplog.text


def test_find_ignores_a_file_others_could_have_written(tmp_path):
    with builds.announce(tmp_path, "127.0.0.1", 7860, "t"):
        (tmp_path / handoff.SERVER_FILE).chmod(0o644)
        assert handoff.find(tmp_path) is None


def test_an_app_on_any_free_port_is_not_announced(tmp_path):
    with builds.announce(tmp_path, "127.0.0.1", 0, "t") as written:
        assert not written and handoff.find(tmp_path) is None


def test_find_ignores_missing_garbled_and_stale_files(tmp_path):
    assert handoff.find(tmp_path) is None
    path = tmp_path / handoff.SERVER_FILE
    for garbage in ["", "not json", "[1, 2]", '{"pid": "x", "host": "h", "port": 1, "token": "t"}', '{"pid": 1}']:
        path.write_text(garbage)
        assert handoff.find(tmp_path) is None, garbage
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path.write_text(json.dumps({"pid": gone.pid, "host": "127.0.0.1", "port": 1, "token": "t"}))
    assert handoff.find(tmp_path) is None


@contextlib.contextmanager
def serve(library: Library) -> Iterator[handoff.Server]:
    """``library`` behind a real uvicorn server with the build route, on a thread."""
    import uvicorn
    from fastapi import FastAPI

    from qa.web.api import router

    app = FastAPI()
    app.include_router(router(library, build_token="right"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield handoff.Server(os.getpid(), "127.0.0.1", port, "right")
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def served(tmp_path, tiny_corpus, fake_embedder):
    """A Library on a fake embedder, served: (library, Server)."""
    library = Library.build([tiny_corpus], index_dir=tmp_path / "index", embedder=fake_embedder)
    with serve(library) as server:
        yield library, server


def settings_of(library: Library, **changes) -> Settings:
    return library.settings.with_(**{"model": library.embedder.name, **changes})


def test_the_app_builds_what_it_is_handed(served, tiny_corpus):
    library, server = served
    first = next(tiny_corpus.iterdir())
    first.write_text(first.read_text() + "\nThe harbour froze over in January.\n")
    (tiny_corpus / "noise.txt").write_bytes(b"\x00\x01binary")
    result = server.build([str(tiny_corpus)], settings_of(library), full=False)
    report = result.report
    assert (report.added, report.changed, report.removed, report.unchanged) == (0, 1, 0, 2)
    assert report.chunks_embedded >= 1
    assert [s.path for s in report.skipped] == [str(tiny_corpus / "noise.txt")]
    assert not any("noise.txt" in w for w in result.warnings)  # once, in the report, not again as a warning
    assert "froze over" in library.search("When did the harbour freeze?", k=1)[0].text
    again = server.build([str(tiny_corpus)], settings_of(library), full=True)
    assert again.report.full_reason == "--full was asked for"


def test_what_the_build_logs_in_the_app_comes_back(served, tiny_corpus):
    library, server = served
    for path in tiny_corpus.iterdir():
        path.unlink()
    result = server.build([str(tiny_corpus)], settings_of(library), full=False)
    assert result.report.removed == 3 and result.report.chunks_total == 0
    assert any("no articles are left" in w for w in result.warnings), result.warnings


def test_the_app_refuses_another_index_or_model_and_says_why(served, tmp_path, tiny_corpus):
    library, server = served
    with pytest.raises(HandOffError, match="serves"):
        server.build([str(tiny_corpus)], settings_of(library, index_dir=tmp_path / "other"), full=False)
    with pytest.raises(HandOffError, match="'fake-bow' loaded, not 'other-model'"):
        server.build([str(tiny_corpus)], settings_of(library, model="other-model"), full=False)
    with pytest.raises(HandOffError, match="this app serves the local index, not 'milvus /"):
        server.build([str(tiny_corpus)], settings_of(library, backend="milvus"), full=False)
    stranger = handoff.Server(server.pid, server.host, server.port, "wrong")
    with pytest.raises(HandOffError, match="build token"):
        stranger.build([str(tiny_corpus)], settings_of(library), full=False)


def test_a_failing_build_reports_its_own_error(served, tmp_path):
    library, server = served
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(QAError, match="No readable articles") as caught:
        server.build([str(empty)], settings_of(library), full=False)
    assert not isinstance(caught.value, HandOffError)  # qa build must not retry it by itself
    with pytest.raises(NoArticlesError):  # the same error as building here
        Library.build([empty], index_dir=tmp_path / "index2", embedder=library.embedder)


def test_a_build_that_crashes_in_the_app_is_an_error_not_a_hand_off(served, tiny_corpus, monkeypatch):
    from qa import indexer

    def broken(*args, **kwargs):
        raise ValueError("a bug in the build")

    library, server = served
    monkeypatch.setattr(indexer, "build", broken)
    with pytest.raises(QAError, match="failed to build") as caught:
        server.build([str(tiny_corpus)], settings_of(library), full=False)
    assert not isinstance(caught.value, HandOffError)  # building again here would only repeat it


class SlowBar(FakeEmbedder):
    """A fake embedder that takes ``delay`` seconds a passage and reports progress after each
    (Embedder does after each batch of 256)."""

    delay = 0.0

    def encode_passages(self, texts, spans, progress=None):
        for n in range(len(texts) + 1):
            if callable(progress):
                progress(n, len(texts))
            time.sleep(self.delay if n < len(texts) else 0)
        return super().encode_passages(texts, spans)


@pytest.fixture
def many(tmp_path) -> Path:
    """300 one-line articles: over the 256 passages that get a progress bar."""
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(300):
        (folder / f"a{n:03}.txt").write_text(f"Article {n} says that harbour {n} froze in winter {1900 + n}.\n")
    return folder


def test_the_progress_bar_is_drawn_in_the_command(tmp_path, tiny_corpus, many, capsys):
    library = Library.build([tiny_corpus], index_dir=tmp_path / "index", embedder=SlowBar())
    with serve(library) as server:
        report = server.build([str(many)], settings_of(library), full=False, progress=True).report
        drawn = capsys.readouterr().err
        quiet = server.build([str(many)], settings_of(library), full=True).report  # no bar asked for
    assert report.added == 300 and quiet.chunks_embedded == 300
    assert "Embedding" in drawn and "300/300" in drawn
    assert "Embedding" not in capsys.readouterr().err


def test_a_command_that_goes_away_stops_the_build(tmp_path, tiny_corpus, many):
    """Ctrl+C in `qa build` closes the connection: the app stops the build before writing anything."""
    embedder = SlowBar()
    library = Library.build([tiny_corpus], index_dir=tmp_path / "index", embedder=embedder)
    before = library.info().generation
    embedder.delay = 0.05  # 15 s for the 300 passages, unless stopped
    with serve(library) as server:
        body = {
            "paths": [str(many)],
            "index_dir": str(Path(library.settings.index_dir).resolve()),
            "model": "fake-bow",
            "chunk_tokens": 192,
            "overlap_sentences": 1,
            "progress": True,
        }
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        conn.request("POST", "/api/build", json.dumps(body), {"Authorization": "Bearer right"})
        response = conn.getresponse()
        assert "progress" in json.loads(response.readline())  # the build is under way
        began = time.monotonic()
        conn.close()
        while (library.settings.index_dir / ".lock").read_text().strip():  # held until the build stops
            assert time.monotonic() - began < 10, "the build did not stop"  # 15 s if it went on
            time.sleep(0.1)
        embedder.delay = 0.0
        report = server.build([str(many)], settings_of(library), full=False).report
    assert report.added == 300  # the stopped build wrote nothing: all 300 are still new
    assert library.info().generation != before  # ...and this one did


def test_a_file_name_that_is_not_utf8_comes_back_in_the_report(served, tiny_corpus):
    library, server = served
    name = os.fsdecode(b"bad-\xff.txt")
    (tiny_corpus / name).write_bytes(b"\x00\x01\x02 binary")
    report = server.build([str(tiny_corpus)], settings_of(library), full=False).report
    assert [s.path for s in report.skipped] == [str(tiny_corpus / name)]


def test_qa_build_builds_here_when_the_app_refuses(served, tiny_corpus, capsys, real_embedder):
    """The app serves another model than `qa build` asks for: the command says so and builds by itself."""
    from qa.cli import main as cli_main

    library, server = served
    index = library.settings.index_dir
    with builds.announce(index, server.host, server.port, server.token):
        assert cli_main(["build", str(tiny_corpus), "--index", str(index)]) == 0
    err = capsys.readouterr().err
    assert "in the app serving it" in err and "'fake-bow' loaded, not" in err and "building here" in err
    assert "model changed" in err  # built here, with the default model


def test_qa_build_builds_here_when_the_app_does_not_answer(tiny_corpus, tmp_path, capsys, real_embedder):
    from qa.cli import main as cli_main

    index = tmp_path / "index"
    index.mkdir()
    with builds.announce(index, "127.0.0.1", free_port(), "t"):  # this process, but no server
        assert cli_main(["build", str(tiny_corpus), "--index", str(index)]) == 0
    err = capsys.readouterr().err
    assert "no answer from" in err and "building here" in err


def test_bad_requests_are_refused(served):
    library, server = served

    def post(body: bytes, token: str = "right") -> tuple[int, str]:
        req = urllib.request.Request(server.url + "/api/build", data=body, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    assert post(b"{}", token="")[0] == 401
    status, text = post(b"not json")
    assert status == 422 and "Not a build request" in text
    for body in [[], {"paths": "x"}, {"paths": ["relative"]}, {"paths": ["/a"], "full": "yes"}]:
        status, text = post(json.dumps(body).encode())
        assert status == 422 and "Not a build request" in text, (body, text)
    bad_chunks = {
        "paths": ["/a"],
        "index_dir": str(Path(library.settings.index_dir).resolve()),
        "model": "fake-bow",
        "chunk_tokens": "many",
        "overlap_sentences": 1,
    }
    assert post(json.dumps(bad_chunks).encode())[0] == 422


def test_an_unreachable_app_is_a_hand_off_error():
    with pytest.raises(HandOffError, match="no answer"):
        handoff.Server(os.getpid(), "127.0.0.1", free_port(), "t").build(["/a"], Settings(), full=False)


def run_cli(*args, no_model: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    cmd = [sys.executable, "-c", NO_MODEL] if no_model else [sys.executable, "-m", "qa.cli"]
    return subprocess.run([*cmd, *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_qa_build_hands_over_to_the_running_app(start_app, real_embedder, tmp_path):
    """The real path: `python app.py` serves an index; `qa build` (unable to import torch) updates it
    through the app, and the app answers from the update at once. Once the app stops, `qa build`
    builds by itself again."""
    folder, index = tmp_path / "articles", tmp_path / "index"
    shutil.copytree(SEEDS, folder)
    Library.build([folder], index_dir=index, embedder=real_embedder)
    article = next(folder.glob("*.md"))
    with start_app(index) as url:
        assert handoff.find(index) is not None
        article.write_text(article.read_text("utf-8") + "\n\nThe delegation toured a lighthouse in Veracruz.\n")
        (folder / "noise.txt").write_bytes(b"\x00\x01binary")
        done = run_cli("build", folder, "--index", index, no_model=True)
        assert done.returncode == 0, done.stderr
        assert "in the app serving it" in done.stderr
        assert done.stderr.count("noise.txt") == 1, done.stderr  # once, as skipped, not also as a warning
        assert "0 added, 1 changed, 0 removed" in done.stdout
        req = urllib.request.Request(
            url + "/api/search",
            data=json.dumps({"question": "Which lighthouse did the delegation tour?", "k": 1}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            assert "Veracruz" in json.loads(r.read())["passages"][0]["text"]
        refused = run_cli("build", tmp_path / "nothing-here", "--index", index, no_model=True)
        assert refused.returncode == 1 and "does not exist" in refused.stderr  # the build's own error
        assert "building here" not in refused.stderr  # not tried again here
        unchanged = run_cli("build", folder, "--index", index, "--no-app", no_model=True)
        assert unchanged.returncode == 0 and "in the app" not in unchanged.stderr
        assert unchanged.stderr.count("noise.txt") == 1, unchanged.stderr
    assert handoff.find(index) is None and not (index / handoff.SERVER_FILE).exists()
    # A file left by an app that was killed: `qa build` notices and builds here.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = {"pid": gone.pid, "host": "127.0.0.1", "port": 9, "token": "t"}
    (index / handoff.SERVER_FILE).write_text(json.dumps(stale))
    article.write_text(article.read_text("utf-8") + "\nA second edit.\n")
    alone = run_cli("build", folder, "--index", index)
    assert alone.returncode == 0, alone.stderr
    assert "in the app" not in alone.stderr and "1 changed" in alone.stdout


def test_ctrl_c_in_qa_build_stops_the_apps_build_with_the_real_model(start_app, real_embedder, tmp_path, capsys):
    """The real path for progress and Ctrl+C: ~530 Wikinews passages handed to `python app.py`.

    With the progress asked for, the bar follows the app's embedding; SIGINT to a `qa build`
    whose build the app runs stops that build, which leaves the index as it was."""
    folder, index = tmp_path / "articles", tmp_path / "index"
    shutil.copytree(SEEDS, folder)
    Library.build([folder], index_dir=index, embedder=real_embedder)
    records = wikinews_records(180)
    with start_app(index):
        (folder / "news.jsonl").write_text("\n".join(records) + "\n", "utf-8")  # ~530 passages
        before = current_generation(index)
        env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
        cmd = [sys.executable, "-c", NO_MODEL, "build", str(folder), "--index", str(index)]
        # SIGINT as a terminal sends it: a suite started in the background by a shell without job control
        # runs with SIGINT ignored, which its children inherit (and Python then keeps no Ctrl+C handler).
        default_int = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=default_int)
        deadline = time.monotonic() + 60
        while not (index / ".lock").read_text().strip():  # the app holds the lock: its build is under way
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)  # stops it at the end of its first batch of 256
        assert proc.wait(30) == 130 and "interrupted" in proc.stderr.read()
        while (index / ".lock").read_text().strip():  # the app stops at its next batch
            assert time.monotonic() < deadline + 60, "the app's build did not stop"
            time.sleep(0.2)
        assert current_generation(index) == before  # nothing was written
        settings = Settings(index_dir=index)
        result = handoff.find(index).build([str(folder)], settings, full=False, progress=True)
    assert result.report.added + len(result.report.skipped) == 180 and result.report.chunks_embedded > 256
    drawn = capsys.readouterr().err
    assert "Embedding" in drawn and f"{result.report.chunks_embedded}/{result.report.chunks_embedded}" in drawn


def test_what_was_cut_comes_back_in_the_report_not_as_a_warning(served, tiny_corpus):
    library, server = served
    (tiny_corpus / "long.jsonl").write_text(json.dumps({"title": "T" * 5000, "text": "Body text."}) + "\n")
    result = server.build([str(tiny_corpus)], settings_of(library), full=False)
    assert [n.endswith("its title is 5000 characters; cut to 300") for n in result.report.notices] == [True]
    assert not any("5000 characters" in w for w in result.warnings)
