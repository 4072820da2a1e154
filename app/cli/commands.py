"""The ``recomb`` command: run the service (``up``, ``api``, ``worker``, ``migrate``) and talk to it (``client``)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time

from app.cli.client import add_client_commands
from app.logs import configure_logging
from app.settings import get_settings

log = logging.getLogger("recomb")
LOOPBACK = "127.0.0.1"
SHUTDOWN_GRACE_S = 60.0
RESTART_BACKOFF_S = 1.0


def cmd_migrate(args: argparse.Namespace) -> int:
    # A separate process: the command line imports neither the migrations nor the worker.
    return subprocess.run([sys.executable, "-m", "migrations", args.revision]).returncode


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    # log_config=None: uvicorn's records go through the root handler (JSON lines) instead of its own.
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.processes,
        log_level="warning",
        access_log=False,
        log_config=None,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    os.execv(sys.executable, worker_argv(args.name))  # replaces this process: signals reach the worker itself


def worker_argv(name: str | None) -> list[str]:
    return [sys.executable, "-m", "worker", *(["--name", name] if name else [])]


def cmd_ping_worker(args: argparse.Namespace) -> int:
    """Exit 0 when the named worker answers a ping through the broker (the worker container's healthcheck).

    A worker runs one job at a time and answers between jobs, so a check
    should allow for the longest job before calling a silent worker dead.
    """
    from app.service.queue import get_celery

    node = args.name if "@" in args.name else f"{args.name}@{socket.gethostname()}"
    try:
        replies = get_celery().control.ping(destination=[node], timeout=args.timeout)
    except Exception as error:  # the broker is down: the worker cannot be reached either
        print(f"recomb ping-worker: broker unreachable: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if any(node in reply for reply in replies):
        print(f"{node}: pong")
        return 0
    print(f"recomb ping-worker: {node} did not answer within {args.timeout:g}s", file=sys.stderr)
    return 1


def cmd_up(args: argparse.Namespace) -> int:
    """Migrate, then run the API and N workers in the foreground; restart any that die, re-queueing its job at once."""
    settings = get_settings()
    host = args.host
    if not settings.api_key_list and host != LOOPBACK:
        log.warning("RECOMB_API_KEYS is not set: binding to %s only (set keys to listen on %s)", LOOPBACK, host)
        host = LOOPBACK
    elif not settings.api_key_list:
        log.warning("RECOMB_API_KEYS is not set: the API is open, bound to %s only", LOOPBACK)
    if cmd_migrate(argparse.Namespace(revision="head")) != 0:
        return 2
    stack = (
        f"embedded (SQLite + filesystem broker in {settings.data_dir})"
        if settings.is_embedded
        else "external (database and broker from RECOMB_* URLs)"
    )
    log.info("recomb up: %s stack, API on http://%s:%d, %d worker(s)", stack, host, args.port, args.workers)
    specs = {"api": [sys.executable, "-m", "app.cli.commands", "api", "--host", host, "--port", str(args.port)]}
    for index in range(args.workers):
        specs[f"worker{index + 1}"] = worker_argv(f"worker{index + 1}-{os.getpid()}")
    processes = {name: subprocess.Popen(argv) for name, argv in specs.items()}
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        time.sleep(0.5)
        for name, process in list(processes.items()):
            if process.poll() is not None and not stopping:
                log.warning("%s exited with code %s; restarting it", name, process.returncode)
                if name.startswith("worker"):
                    _requeue_jobs_of_dead_worker(process.pid)
                time.sleep(RESTART_BACKOFF_S)
                processes[name] = subprocess.Popen(specs[name])
    log.info("stopping: workers finish their current job (up to %.0fs)", SHUTDOWN_GRACE_S)
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + SHUTDOWN_GRACE_S
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
    return 0


def _requeue_jobs_of_dead_worker(pid: int) -> None:
    """The job a dead worker held goes back on the queue now, not after its heartbeat times out."""
    from app.service.lost_jobs import requeue_jobs_of

    try:
        requeued = requeue_jobs_of(get_settings(), f"{socket.gethostname()}:{pid}")
    except Exception:  # the database or broker is down: the reconcilers' heartbeat sweep re-queues it later
        log.warning("could not re-queue the jobs of worker pid %d; the reconciler will", pid, exc_info=True)
        return
    if requeued:
        log.warning("re-queued %d job(s) of the dead worker (pid %d)", requeued, pid)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recomb", description="Distil, quantize, recombine and validate small Q-networks."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="API + workers on the configured stack (embedded by default)")
    up.add_argument("--host", default=LOOPBACK)
    up.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    up.add_argument("--workers", type=int, default=max(1, min(os.cpu_count() or 1, 4)))
    up.set_defaults(handler=cmd_up)
    api = commands.add_parser("api", help="the HTTP API alone")
    api.add_argument("--host", default=LOOPBACK)
    api.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    api.add_argument(
        "--processes", type=int, default=1, help="API processes sharing the port (the API keeps no state of its own)"
    )
    api.set_defaults(handler=cmd_api)
    worker = commands.add_parser("worker", help="one worker process (one job at a time, one torch thread)")
    worker.add_argument("--name", default=None)
    worker.set_defaults(handler=cmd_worker)
    ping = commands.add_parser("ping-worker", help="exit 0 if a worker answers through the broker (a healthcheck)")
    ping.add_argument(
        "--name",
        default="celery",
        help="the worker's node name; without @host, this machine's "
        "(default: celery, as `recomb worker` without --name)",
    )
    ping.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    ping.set_defaults(handler=cmd_ping_worker)
    migrate = commands.add_parser("migrate", help="upgrade (or downgrade) the database schema")
    migrate.add_argument(
        "revision",
        nargs="?",
        default="head",
        help="target: a revision id, head (the default), base (no tables), or a step such as -1 or +1",
    )
    migrate.set_defaults(handler=cmd_migrate)
    add_client_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(
        settings.log_level, json_lines=args.command in ("api", "worker") and settings.log_format == "json"
    )
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
