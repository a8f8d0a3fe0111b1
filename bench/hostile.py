"""The app's memory before and after a fixed hostile run: every request of issue 11, each refused or answered, bounded.

    .venv/bin/python bench/hostile.py [--rounds 3] [--articles N] [--at-limit] [--no-write]

Starts `python app.py` on a temporary copy of the seed article and the Wikinews articles
(tests/fixtures' slice when ../shared is absent), warms it up with the requests a person
makes (a search, a chat turn, the /search endpoint, a pasted article), then sends the fixed
hostile run ``--rounds`` times: 100 MB questions, deeply nested JSON, lone surrogates, bad
``k``, a lying Content-Length, a long chunked body, poisoned and heavy uploads through the
Add-articles panel and a `qa build` hand-off with an absurd chunk size. For each: the answer's
status, size and time, and the app's resident memory (VmRSS) after it; at the end its peak
(VmHWM). Exits non-zero when an answer is a 5xx, a request gets no answer, the app dies, it no
longer answers a plain question, or its peak grew more than ``--max-growth-mb`` over the run.
``--at-limit`` adds the heaviest upload the panel takes (a 99 MB .jsonl): the worst case, not the fixed run.
"""

from __future__ import annotations

import argparse
import html
import http.client
import json
import os
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.app import memory_mb, stop  # noqa: E402
from bench.report import write_section  # noqa: E402
from qa.config import Settings  # noqa: E402

WIKINEWS = ROOT.parent / "shared" / "data" / "wikinews" / "articles.jsonl"
FIXTURE = ROOT / "tests" / "fixtures" / "wikinews" / "articles.jsonl"
QUESTION = "Who traveled to Mexico City?"
MB = 2**20
TIMEOUT = 120.0


@dataclass(frozen=True)
class Answer:
    """What one request got: its HTTP status, the answer's outcome in a few words, its size, and its time."""

    status: int
    outcome: str
    size: int
    seconds: float = 0.0


@dataclass(frozen=True)
class Hostile:
    """One request of the run: what it is, what a bounded app answers, and how to send it."""

    name: str
    expected: str
    send: Callable[[str, Path], Answer]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="times the whole run is sent (default: 3)")
    parser.add_argument("--articles", type=int, help="Wikinews records besides the seed article (default: all)")
    parser.add_argument("--max-growth-mb", type=float, default=256.0, help="most the peak may grow (default: 256)")
    parser.add_argument("--at-limit", action="store_true", help="also upload a .jsonl at the upload limit")
    parser.add_argument("--no-write", action="store_true", help="print, don't update docs/benchmarks.md")
    args = parser.parse_args()
    if args.at_limit:
        HOSTILE.append(AT_LIMIT)
    with tempfile.TemporaryDirectory(prefix="qa-bench-hostile-") as tmp:
        folder, index, records = prepare(Path(tmp), args.articles)
        with App(index, folder / "added", Path(tmp)) as app:
            memory = {"started": app.memory()}
            warm_up(app.url)
            memory["warm"] = app.memory()
            results = run(app, index, args.rounds, memory)
            final = plain_question(app.url) if app.alive() else "the app died"
            memory["end"] = app.memory() if app.alive() else memory[f"round {len(results)}"]
            log = app.log_tail()
    failures = failures_of(results, final, memory, args.max_growth_mb)
    body = report(results, memory, records, final, failures, args)
    print(body)
    if failures:
        print("\nFAILED:\n- " + "\n- ".join(failures) + "\n\nThe app's log ends:\n" + log, file=sys.stderr)
    if not args.no_write:
        write_section("hostile", "Hostile requests: the app's memory stays bounded", body)
    return 1 if failures else 0


def prepare(tmp: Path, limit: int | None) -> tuple[Path, Path, int]:
    """A collection folder (the seed article and Wikinews records) and its index, built by `qa build`;
    and the number of records."""
    folder, index = tmp / "articles", tmp / "index"
    shutil.copytree(ROOT / "seeds", folder)
    source = WIKINEWS if WIKINEWS.is_file() else FIXTURE
    lines = source.read_text("utf-8").splitlines()[:limit]
    (folder / "wikinews.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    subprocess.run(
        [sys.executable, "-m", "qa.cli", "build", str(folder), "--index", str(index), "--no-app"],
        cwd=ROOT,
        env=app_env(tmp),
        check=True,
        capture_output=True,
    )
    return folder, index, len(lines)


def app_env(tmp: Path) -> dict[str, str]:
    """The environment the app runs in: no QA_* settings of this shell, uploads under ``tmp`` (qa itself is offline)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    (tmp / "gradio").mkdir(exist_ok=True)
    env.update(GRADIO_TEMP_DIR=str(tmp / "gradio"))
    return env


class App:
    """`python app.py` on a free port serving ``index``, adding articles to ``collection``; stopped on exit."""

    def __init__(self, index: Path, collection: Path, tmp: Path) -> None:
        self.index, self.collection, self.tmp = index, collection, tmp
        self.log = tmp / "app.log"

    def __enter__(self) -> App:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        args = ["--port", str(port), "--index", str(self.index), "--collection", str(self.collection)]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "app.py", *args], cwd=ROOT, env=app_env(self.tmp), stdout=out, stderr=out
            )
        deadline = time.monotonic() + 300
        while not (self.index / ".server").exists() or search(self.url, QUESTION).status != 200:
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"app.py gave no answer in 300 s:\n{self.log_tail()}")
            time.sleep(0.2)
        return self

    def alive(self) -> bool:
        return self.proc.poll() is None

    def memory(self) -> tuple[float, float]:
        """The app's resident memory now and its peak so far (VmRSS, VmHWM), in MB."""
        return memory_mb(self.proc.pid)

    def log_tail(self) -> str:
        return self.log.read_text("utf-8", "replace")[-3000:]

    def __exit__(self, *exc) -> None:
        stop(self.proc)


def run(app: App, index: Path, rounds: int, memory: dict) -> dict[str, list[tuple[Answer, tuple[float, float]]]]:
    """Send every hostile request ``rounds`` times: each one's answers and the app's (VmRSS, VmHWM) after each."""
    results: dict[str, list[tuple[Answer, tuple[float, float]]]] = {h.name: [] for h in HOSTILE}
    for n in range(1, rounds + 1):
        for hostile in HOSTILE:
            began = time.perf_counter()
            try:
                answer = hostile.send(app.url, index)
            except OSError as e:
                answer = Answer(0, f"no answer: {e}", 0)
            answer = Answer(answer.status, answer.outcome, answer.size, time.perf_counter() - began)
            if not app.alive():
                results[hostile.name].append((answer, (0.0, 0.0)))
                return results
            rss, hwm = app.memory()
            results[hostile.name].append((answer, (rss, hwm)))
            print(f"round {n}: {hostile.name}: {answer.status} {answer.outcome!r} {answer.size:,} B "
                  f"{answer.seconds * 1000:.0f} ms, VmRSS {rss:.0f} MB, VmHWM {hwm:.0f} MB", flush=True)  # fmt: skip
        memory[f"round {n}"] = app.memory()
    return results


# ---- the requests ----


def big_question(field: str = "question") -> bytes:
    """A JSON body whose question is 100 MB."""
    return b'{"' + field.encode() + b'": "' + b"x" * (100 * MB) + b'"}'


def search_100mb(url: str, index: Path) -> Answer:
    return send(url, "/api/search", big_question())


def chat_100mb(url: str, index: Path) -> Answer:
    return send(url, "/gradio_api/call/chat", b'{"data": ["' + b"x" * (100 * MB) + b'", [], 5]}')


def nested(depth: int) -> Callable[[str, Path], Answer]:
    def post(url: str, index: Path) -> Answer:
        return send(url, "/api/search", b"[" * depth)

    return post


def surrogate_search(url: str, index: Path) -> Answer:
    return send(url, "/api/search", b'{"question": "\\ud800 Who traveled to Mexico City?", "k": 5}')


def gradio(api_name: str, data: bytes) -> Callable[[str, Path], Answer]:
    """A call of the Gradio endpoint ``api_name`` with the raw JSON list ``data`` (any value, even a lone surrogate)."""

    def call(url: str, index: Path) -> Answer:
        posted = send(url, f"/gradio_api/call/{api_name}", b'{"data": ' + data + b"}")
        if posted.status != 200:
            return posted
        event_id = json.loads(posted.outcome)["event_id"]
        status, raw = request(url, "GET", f"/gradio_api/call/{api_name}/{event_id}")
        lines = raw.decode("utf-8", "replace").splitlines()
        events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
        last = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")][-1:]
        return Answer(status, f"{events[-1] if events else '?'}: {brief(last[0] if last else '')}", len(raw))

    return call


def declared_100mb(url: str, index: Path) -> Answer:
    return send(url, "/api/search", b"{}", declared=100 * MB)


def chunked_100mb(url: str, index: Path) -> Answer:
    return send(url, "/api/search", big_question(), chunked=True)


def alias_bomb() -> bytes:
    """Markdown whose front matter nests YAML aliases nine levels deep: 9**9 strings if expanded."""
    lines, previous = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'], "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [{','.join(['*' + previous] * 9)}]")
        previous = name
    return ("---\n" + "\n".join(lines) + f"\ntitle: *{previous}\n---\nA harmless looking article.\n").encode()


def upload(name: str, data: Callable[[], bytes]) -> Callable[[str, Path], Answer]:
    """The Add-articles panel's button pressed with one uploaded file, as a hand-made client would."""

    def add(url: str, index: Path) -> Answer:
        status, raw = request(url, "POST", "/gradio_api/upload", *multipart(name, data()))
        if status != 200:
            return Answer(status, f"upload: {brief(raw)}", len(raw))
        [path] = json.loads(raw)
        return call_add(url, [{"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}])

    return add


def surrogate_jsonl() -> bytes:
    return b'{"title": "Poisoned", "text": "x \\ud800 y. The harbour reopened on Monday after the storm."}\n'


def heavy_jsonl(lines: int = 100_000) -> bytes:
    """``lines`` short articles, 136 bytes each: 100,000 (13 MB) would take the app the best part of an hour."""
    line = '{"id": %d, "text": "Harbour note %d: the ferries left on time and the pier was swept at dawn. %s"}\n'
    return "".join(line % (n, n, "All quiet." * 4) for n in range(lines)).encode()


def handoff(url: str, index: Path) -> Answer:
    """`qa build`'s hand-off, with its token, asking for chunks of 10**12 tokens."""
    server = json.loads((index / ".server").read_text("utf-8"))
    body = {
        "paths": [str((index.parent / "articles").resolve())],
        "full": False,
        "index_dir": str(index.resolve()),
        "model": Settings().model,
        "chunk_tokens": 10**12,
        "overlap_sentences": 1,
        "progress": False,
    }
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {server['token']}"}
    status, raw = request(url, "POST", "/api/build", json.dumps(body).encode(), headers)
    return Answer(status, brief(raw), len(raw))


HOSTILE = [
    Hostile("100 MB question, POST /api/search", "413", search_100mb),
    Hostile("100 MB question, Gradio /chat (POST /gradio_api/call/chat)", "413", chat_100mb),
    Hostile("100,000 nested `[`, POST /api/search", "413 (over 64 KB)", nested(100_000)),
    Hostile("60,000 nested `[` (under the size limit), POST /api/search", "400", nested(60_000)),
    Hostile("lone surrogate question, POST /api/search", "200, answered", surrogate_search),
    Hostile("lone surrogate question, Gradio /search", "answered", gradio("search", b'["\\ud800 Who traveled?", 5]')),
    Hostile("lone surrogate question, Gradio /chat", "answered", gradio("chat", b'["\\ud800 Who traveled?", [], 5]')),
    Hostile("k=10**12, Gradio /search", "error event", gradio("search", b'["Who traveled?", 1000000000000]')),
    Hostile('k="5", Gradio /search', "error event", gradio("search", b'["Who traveled?", "5"]')),
    Hostile("k=2.7, Gradio /search", "error event", gradio("search", b'["Who traveled?", 2.7]')),
    Hostile("declared Content-Length 100 MB, 2-byte body", "413 at once", declared_100mb),
    Hostile("chunked 100 MB body, POST /api/search", "413", chunked_100mb),
    Hostile("YAML alias bomb .md (9 levels), Add-articles panel", "refused", upload("bomb.md", alias_bomb)),
    Hostile("lone surrogate .jsonl, Add-articles panel", "added, cleaned", upload("poisoned.jsonl", surrogate_jsonl)),
    Hostile("13 MB .jsonl of 100,000 short lines, Add-articles panel", "refused", upload("notes.jsonl", heavy_jsonl)),
    Hostile("`qa build` hand-off with chunk_tokens=10**12", "422", handoff),
]
# With --at-limit: the heaviest .jsonl the panel takes (Gradio's max_file_size), 99 MB of 720,000 lines.
AT_LIMIT = Hostile(
    "99 MB .jsonl of 720,000 short lines (the upload limit), Add-articles panel",
    "refused",
    upload("limit.jsonl", lambda: heavy_jsonl(720_000)),
)


# ---- warm-up and the last, plain question ----


def warm_up(url: str) -> None:
    """What a person does first, so that the run's growth is not the app's first-use costs."""
    checks = [
        search(url, QUESTION),
        gradio("chat", json.dumps([QUESTION, [], 5]).encode())(url, Path()),
        gradio("search", json.dumps([QUESTION, 5]).encode())(url, Path()),
        call_add(url, [], "Harbour crane", "A harbour crane named Bertha was unloaded in Rotterdam on Tuesday."),
    ]
    for answer in checks:
        if answer.status != 200 or answer.outcome.startswith("error"):
            raise RuntimeError(f"the warm-up failed: {answer}")


def plain_question(url: str) -> str:
    """'answered' when a plain question still gets its passages after the run, else what it got."""
    answer = search(url, QUESTION)
    return "answered" if answer.status == 200 and "Blinken" in answer.outcome else f"{answer.status}: {answer.outcome}"


def search(url: str, question: str) -> Answer:
    try:
        status, raw = request(url, "POST", "/api/search", json.dumps({"question": question, "k": 5}).encode())
    except OSError as e:
        return Answer(0, str(e), 0)
    return Answer(status, raw.decode("utf-8", "replace"), len(raw))


# ---- HTTP by hand: the run sends what no well-behaved client would ----


def send(url: str, path: str, body: bytes, declared: int | None = None, chunked: bool = False) -> Answer:
    """POST ``body`` (with a Content-Length of ``declared``, or chunked), stopping as soon as the app
    answers: a bounded app answers a 100 MB body long before it is all sent."""
    host, port = url.removeprefix("http://").split(":")
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {declared or len(body)}"
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n{framing}\r\n"
    if chunked:
        pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(head.encode() + b"Connection: close\r\n\r\n")
        sent, data = 0, memoryview(body)
        while sent < len(data):
            readable, writable, _ = select.select([sock], [sock], [], TIMEOUT)
            if readable or not writable:  # an answer already, or the app stopped reading
                break
            try:
                sent += sock.send(data[sent : sent + 65536])
            except (BrokenPipeError, ConnectionResetError):
                break
        response = http.client.HTTPResponse(sock)
        response.begin()
        try:
            raw = response.read()
        except (ConnectionResetError, http.client.IncompleteRead) as e:
            raw = getattr(e, "partial", b"")
    outcome = raw.decode("utf-8", "replace") if b"event_id" in raw else brief(raw)
    return Answer(response.status, outcome, len(raw))


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, body) of a well-formed request."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        conn.request(method, path, body, {"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def multipart(name: str, data: bytes) -> tuple[bytes, dict]:
    """A multipart/form-data body with one file in the field "files", as the page uploads it."""
    boundary = uuid.uuid4().hex
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
    body = head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def call_add(url: str, files: list[dict], title: str = "", text: str = "") -> Answer:
    """The Add-articles panel's button through Gradio's queue: joined, then its events read to the end."""
    status, raw = request(url, "GET", "/config")
    config = json.loads(raw)
    ids = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    [fn] = [i for i, d in enumerate(config["dependencies"]) if any(ids[t[0]] == "qa-add" for t in d["targets"])]
    session = uuid.uuid4().hex
    api = config.get("api_prefix", "/gradio_api")
    body = json.dumps({"data": [files, title, text], "fn_index": fn, "session_hash": session}).encode()
    status, raw = request(url, "POST", api + "/queue/join", body)
    if status != 200:
        return Answer(status, f"join: {brief(raw)}", len(raw))
    status, raw = request(url, "GET", f"{api}/queue/data?session_hash={session}")
    for line in raw.decode("utf-8", "replace").splitlines():
        event = json.loads(line.removeprefix("data:").strip() or "{}")
        if event.get("msg") == "process_completed":
            if not event.get("success"):
                return Answer(status, f"error: {brief(json.dumps(event.get('output')))}", len(raw))
            return Answer(status, brief(event["output"]["data"][0]), len(raw))
    return Answer(status, "no process_completed event", len(raw))


def brief(raw: bytes | str, chars: int = 110) -> str:
    """An answer in a few words: a JSON error's message, how many passages, or the text without its markup, cut."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and ("error" in data or "passages" in data):
        text = data["error"] if "error" in data else f"{len(data['passages'])} passages"
    elif isinstance(data, list) and data and isinstance(data[0], list):  # a Gradio endpoint's outputs
        text = f"{len(data[0])} passages" if data[0] and "title" in data[0][0] else f"{len(data[0])} chat messages"
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", str(text)))).strip()
    text = re.sub(r"^Saved in /\S+ :", "Saved:", text)  # the temporary folder's name says nothing
    return text if len(text) <= chars else text[: chars - 1] + "…"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the verdict and the table ----


def failures_of(results: dict, final: str, memory: dict, max_growth: float) -> list[str]:
    """Every reason to exit non-zero: a 5xx, no answer, the app gone or broken, a peak grown too much."""
    failures = [
        f"{name}: {a.status} {a.outcome}" for name, runs in results.items() for a, _ in runs if not 0 < a.status < 500
    ]
    if final != "answered":
        failures.append(f"a plain question after the run: {final}")
    growth = memory["end"][1] - memory["warm"][1]
    if growth > max_growth:
        failures.append(f"the app's peak memory grew {growth:.0f} MB over the run (more than {max_growth:.0f})")
    return failures


def report(results: dict, memory: dict, records: int, final: str, failures: list[str], args) -> str:
    rows = [
        f"| request | expected | answer | bytes | ms (median of {args.rounds}) | VmRSS after, MB (first / last) "
        "| VmHWM after, MB (first / last) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for hostile in HOSTILE:
        runs = results[hostile.name]
        if not runs:
            continue
        first, _ = runs[0]
        answer = f"{first.status}: {first.outcome}".replace("|", "\\|")
        ms = statistics.median(a.seconds for a, _ in runs) * 1000
        (rss, hwm), (last_rss, last_hwm) = runs[0][1], runs[-1][1]
        rows.append(
            f"| {hostile.name} | {hostile.expected} | {answer} | {max(a.size for a, _ in runs):,} | "
            f"{ms:,.0f} | {rss:.0f} / {last_rss:.0f} | {hwm:.0f} / {last_hwm:.0f} |"
        )
    rounds = [key for key in memory if key.startswith("round")]
    mem = ["| moment | VmRSS, MB | VmHWM (peak so far), MB |", "|---|---:|---:|"]
    labels = {"started": "started, one question answered", "warm": "after the warm-up", "end": "at the end"}
    for key in ["started", "warm", *rounds, "end"]:
        mem.append(f"| {labels.get(key, 'after ' + key)} | {memory[key][0]:.0f} | {memory[key][1]:.0f} |")
    verdict = "no 5xx, every request answered" if not failures else "FAILED: " + "; ".join(failures)
    return (
        "\n".join(rows) + "\n\n" + "\n".join(mem) + "\n\n"
        f"`python app.py` serving the seed article and {records} Wikinews records, "
        "warmed up with a search, a chat turn, a /search call and a pasted article; then the run above, "
        f"{args.rounds} times. Times are the client's wall time (uploads included); bytes are the answer's "
        "(for Gradio calls, the event stream; for the panel, the queue's). "
        f"Over the run the peak grew {memory['end'][1] - memory['warm'][1]:.0f} MB and the resident memory "
        f"{memory['end'][0] - memory['warm'][0]:+.0f} MB. A plain question afterwards: {final}. Verdict: {verdict}.\n"
    )


if __name__ == "__main__":
    sys.exit(main())
