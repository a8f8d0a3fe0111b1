"""A small OpenAI-compatible chat-completions server for the tests: it streams a scripted answer.

No model ships offline, so tests of generated answers (qa.generate, the chat) talk to this one, on
127.0.0.1 and a free port, in a thread of the test process. ``mode`` says how it answers the next
requests; ``hold`` makes it stop after the first pieces until the test releases it, so that a test
can see the answer arrive piece by piece.

    with ScriptedLLM() as llm:            # llm.url is http://127.0.0.1:PORT/v1
        llm.mode = "midstream"            # the connection breaks after two pieces
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The scripted answer, in the pieces it streams: a citation split over two pieces, markup that must
# show as text, and a citation of a passage no chat shows ([7]: at most 5 are shown in these tests).
PIECES = [
    "Blinken traveled ",
    "to Mexico City [1",
    "]. ",
    'He said <b>crime</b> is a cycle <img src=x onerror="window.__xss=1"> ',
    "![x](http://example.com/x.png) [2, 7].",
]
ANSWER = "".join(PIECES)
SHOWN_ANSWER = (  # what the chat shows of it: [7] removed, the markup as text
    'Blinken traveled to Mexico City [1]. He said <b>crime</b> is a cycle <img src=x onerror="window.__xss=1"> '
    "![x](http://example.com/x.png) [2]."
)
HELD_AFTER = 3  # with ``hold``, the pieces sent before the server waits: "Blinken traveled to Mexico City [1]. "
MODES = ("answer", "length", "whole", "midstream", "no-done", "http500", "garbage", "html", "slow", "error-event")


class ScriptedLLM:
    """The server; a context manager that starts it in a thread and stops it."""

    def __init__(self) -> None:
        self.mode = "answer"
        self.hold = False  # stop after HELD_AFTER pieces until ``release`` is set
        self.linger = False  # after the last piece, send SSE comments until the client hangs up (or 10 s pass)
        self.held = threading.Event()  # set when the server is holding
        self.release = threading.Event()
        self.requests: list[dict] = []  # the JSON bodies received, with their headers under "_headers"
        self.hung_up = 0  # answers the client stopped reading before their end
        self._stop = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _handler(self))

    @property
    def url(self) -> str:
        """The base URL, as QA_LLM_URL takes it."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedLLM:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def reset(self, mode: str = "answer", hold: bool = False, linger: bool = False) -> None:
        assert mode in MODES, mode
        self.mode, self.hold, self.linger = mode, hold, linger
        self.held.clear()
        self.release.clear()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """Quiet about clients that hung up (the tests make them); loud about anything else."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def closed_port_url() -> str:
    """A base URL where nothing listens: the port was free a moment ago and is closed now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _chunk(content: str | None = None, finish: str | None = None, role: bool = False) -> dict:
    delta = {"role": "assistant"} if role else ({"content": content} if content is not None else {})
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _handler(llm: ScriptedLLM):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # chunked bodies, so a broken stream is a broken chunk, as in real servers

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            body["_headers"] = dict(self.headers)
            llm.requests.append(body)
            try:
                getattr(self, "_" + llm.mode.replace("-", "_"))()
            except ConnectionError:
                llm.hung_up += 1  # the client closed the connection mid-answer: it no longer wanted it

        def _start(self, status: int = 200, kind: str = "text/event-stream") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _send(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _event(self, event: dict | str) -> None:
            self._send(f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n".encode())

        def _end(self) -> None:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _pieces(self, upto: int | None = None) -> None:
            self._event(_chunk(role=True))
            for n, piece in enumerate(PIECES[:upto], start=1):
                if llm.hold and n > HELD_AFTER:
                    time.sleep(0.1)  # as a model writes: a client that hung up meanwhile makes the next write fail
                self._event(_chunk(piece))
                if llm.hold and n == HELD_AFTER:
                    llm.held.set()
                    llm.release.wait(30)
            for _ in range(100 if llm.linger else 0):  # a hang-up seen however late the client closes (a loaded
                time.sleep(0.1)  # machine): a write fails only once the peer's reset has come back
                self._send(b": still writing\n\n")

        def _answer(self) -> None:
            self._start()
            self._pieces()
            self._event(_chunk(finish="stop"))
            self._event("[DONE]")
            self._end()

        def _length(self) -> None:  # the model hit its token limit; then a chunk of usage only, as OpenAI's
            self._start()
            self._pieces(2)
            self._event(_chunk(finish="length"))
            self._event({"object": "chat.completion.chunk", "choices": [], "usage": {"completion_tokens": 9}})
            self._event("[DONE]")
            self._end()

        def _whole(self) -> None:  # a server that ignores "stream": one JSON completion
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": ANSWER}}]}).encode()
            self._start(kind="application/json")
            self._send(data)
            self._end()

        def _midstream(self) -> None:  # the connection breaks after two pieces: no last chunk
            self._start()
            self._pieces(2)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

        def _no_done(self) -> None:  # the body ends properly, but the answer never finished
            self._start()
            self._pieces(2)
            self._end()

        def _http500(self) -> None:
            data = json.dumps({"error": {"message": "model crashed <b>badly</b>", "type": "server_error"}}).encode()
            self._start(500, "application/json")
            self._send(data)
            self._end()

        def _garbage(self) -> None:  # an event stream whose events are not JSON
            self._start()
            self._event(_chunk("Blinken "))
            self._send(b"data: <html>Bad Gateway</html>\n\n")
            self._end()

        def _html(self) -> None:  # a web page, not an API
            self._start(200, "text/html")
            self._send(b"<html><body>It works!</body></html>")
            self._end()

        def _error_event(self) -> None:  # a server reporting a failure inside the stream
            self._start()
            self._event(_chunk("Blinken "))
            self._event({"error": {"message": "out of memory"}})
            self._end()

        def _slow(self) -> None:  # headers, then nothing until the test ends
            self._start()
            self.wfile.flush()
            llm._stop.wait(30)

    return Handler
