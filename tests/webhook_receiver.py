"""A real HTTP receiver for webhook tests: ``http.server`` on 127.0.0.1 in a thread, recording every POST."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class ReceivedPost:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next status of ``statuses`` (the last one repeats), after ``delay_s``."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay_s: float = 0.0
    posts: list[ReceivedPost] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[ReceivedPost]:
        deadline = time.monotonic() + timeout_s
        while len(self.posts) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.posts)

    def posts_about(self, job_id: str) -> list[ReceivedPost]:
        """The POSTs whose event is about ``job_id`` (a shared stack's other jobs end too)."""
        return [post for post in self.posts if json.loads(post.body)["job_id"] == job_id]

    def wait_for_job(self, job_id: str, timeout_s: float = 30.0) -> list[ReceivedPost]:
        deadline = time.monotonic() + timeout_s
        while not self.posts_about(job_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.posts_about(job_id)


@contextmanager
def running_receiver(statuses: list[int] | None = None, delay_s: float = 0.0) -> Iterator[Receiver]:
    receiver = Receiver(statuses=statuses or [200], delay_s=delay_s)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            index = len(receiver.posts)
            receiver.posts.append(ReceivedPost(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            time.sleep(receiver.delay_s)
            self.send_response(receiver.statuses[min(index, len(receiver.statuses) - 1)])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
