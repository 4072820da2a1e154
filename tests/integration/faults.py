"""Fault injectors for integration tests: a cuttable TCP proxy, a private Redis, process and socket probes.

Everything here runs on loopback, is started by a test and is torn down by
it; nothing touches the machine's shared PostgreSQL or Redis beyond opening
connections to them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

# Both modules that use these injectors run on the Redis + PostgreSQL stack: without its client libraries they are skipped whole.
redis = pytest.importorskip(
    "redis", reason="the redis-postgres extra is not installed (pip install -e '.[redis-postgres]')"
)

from tests.integration.stack import free_port

PROXY_BUFFER_BYTES = 64 * 1024
REDIS_START_TIMEOUT_S = 10.0


class TcpProxy:
    """Forwards a loopback port to ``upstream``; ``cut()`` makes the upstream unreachable until ``restore()``.

    While cut, every open connection is closed and new ones are accepted and
    closed at once, so clients see a dead server (not a hang) and fail fast.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._reachable = threading.Event()
        self._reachable.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._open_sockets: set[socket.socket] = set()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True, name="tcp-proxy-accept")
        self._acceptor.start()

    def cut(self) -> None:
        self._reachable.clear()
        with self._lock:
            sockets, self._open_sockets = self._open_sockets, set()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        self._reachable.set()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._acceptor.join(timeout=5)
        self.listener.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._reachable.is_set():
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._open_sockets.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True, name="tcp-proxy-pump").start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(PROXY_BUFFER_BYTES):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open_sockets.discard(source)
                self._open_sockets.discard(target)
            _close(source)
            _close(target)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port, without persistence: a restart loses every key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed")
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "redis.log", "ab")
        argv = [
            executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.root),
        ]
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if client.ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not start; see {self.root / 'redis.log'}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        """Kill and start again on the same port: everything it held is gone."""
        self.stop()
        self.start()

    def key_count(self) -> int:
        return int(redis.Redis.from_url(self.url).dbsize())


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc``)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        children.extend(int(value) for value in text.split())
    return children


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except FileNotFoundError:
        return []


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (IPv4 and IPv6), from ``/proc/net``."""
    listen_state = "0A"
    addresses = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            host_hex, port_hex = local.split(":")
            if state == listen_state and int(port_hex, 16) == port:
                addresses.add(_decode_address(host_hex, width))
    return addresses


def _decode_address(host_hex: str, width: int) -> str:
    raw = bytes.fromhex(host_hex)
    # /proc/net stores each 32-bit word in host (little-endian) order.
    words = b"".join(raw[index : index + 4][::-1] for index in range(0, len(raw), 4))
    family = socket.AF_INET if width == 8 else socket.AF_INET6
    return socket.inet_ntop(family, words)


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.1):
    """Poll ``condition`` until it returns something truthy; raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
