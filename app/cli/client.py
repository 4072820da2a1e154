"""The ``recomb`` client commands: submit, watch, report, lineage, ls.

They talk to a running server at ``RECOMB_URL`` (default
``http://127.0.0.1:8000``) with ``RECOMB_API_KEY`` as a bearer token, follow
jobs over ``GET /jobs/{id}/events`` (server-sent events) and print plain
tables. Every failure to talk to the server is one line on stderr and exit
code 2; a job that did not succeed, or whose report did not pass, is exit
code 1. This module imports no torch, so the commands start fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
EXIT_OK, EXIT_NOT_PASSED, EXIT_ERROR = 0, 1, 2
REQUEST_TIMEOUT_S = 30.0  # above the server's 10 s event-stream heartbeat
STREAM_RECONNECTS = 5
# A busy server answers 429 (or 503) with Retry-After: the client waits as told, a few times, before giving up.
BUSY_RETRIES = 5
BUSY_WAIT_MAX_S = 10.0
RECONNECT_PAUSE_S = 1.0
PROGRESS_BAR_WIDTH = 24
LEADERBOARD_ROWS_SHOWN = 10


class ClientError(Exception):
    """A failure to show the user as one line (no traceback)."""


class RecombClient:
    """A thin JSON client of the recomb HTTP API."""

    def __init__(
        self, base_url: str = DEFAULT_URL, api_key: str | None = None, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=REQUEST_TIMEOUT_S, transport=transport
        )

    @classmethod
    def from_environment(cls, url: str | None = None) -> RecombClient:
        return cls(url or os.environ.get("RECOMB_URL") or DEFAULT_URL, os.environ.get("RECOMB_API_KEY") or None)

    def get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params={key: value for key, value in params.items() if value is not None})

    def submit(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        # A key of its own, so a submission retried after a 429 or a dropped connection queues one job, not two.
        return self._request("POST", f"/jobs/{kind}", json=params, headers={"Idempotency-Key": uuid.uuid4().hex})

    def report_for(self, identifier: str) -> dict[str, Any]:
        """A report by its id, or the report of a job id."""
        if identifier.startswith("job_"):
            job = self.get(f"/jobs/{identifier}")
            if not job["report_id"]:
                raise ClientError(
                    f"job {identifier} has no report ({job['status']}{': ' + job['error'] if job['error'] else ''})"
                )
            identifier = job["report_id"]
        return self.get(f"/reports/{identifier}")

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(event, data)`` pairs of the job's event stream, until the server ends it."""
        try:
            with self.http.stream("GET", f"/jobs/{job_id}/events", headers={"Accept": "text/event-stream"}) as response:
                if response.status_code != 200:
                    response.read()
                    self._check(response)
                yield from parse_event_stream(response.iter_lines())
        except httpx.TransportError as error:
            raise StreamInterrupted(self._unreachable(error)) from error

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(BUSY_RETRIES + 1):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                raise ClientError(self._unreachable(error)) from error
            retry_after = response.headers.get("Retry-After")
            if (
                response.status_code not in (429, 503)
                or retry_after is None
                or not retry_after.isdigit()
                or attempt == BUSY_RETRIES
            ):
                break
            time.sleep(min(float(retry_after), BUSY_WAIT_MAX_S))
        self._check(response)
        return response.json()

    def _unreachable(self, error: httpx.TransportError) -> str:
        reason = str(error) or type(error).__name__
        return f"cannot reach the recomb server at {self.base_url} ({reason}); is it running? (set RECOMB_URL)"

    def _check(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        if response.status_code == 401:
            if self.api_key:
                raise ClientError(f"{self.base_url} refused the API key in RECOMB_API_KEY (401)")
            raise ClientError(f"{self.base_url} needs an API key: set RECOMB_API_KEY (401)")
        raise ClientError(f"{error_detail(response)} ({response.status_code})")


class StreamInterrupted(ClientError):
    """The event stream could not be opened or broke off mid-way."""


def arch_label(arch: dict[str, Any]) -> str:
    """``8-64-64-4 layernorm relu`` from a checkpoint's ``arch`` record."""
    widths = arch.get("hidden_sizes") or [arch.get("hidden_size")] * 2
    dims = "-".join(str(width) for width in (arch.get("input_dim"), *widths, arch.get("output_dim")))
    return f"{dims} {arch.get('norm', 'layernorm')} {arch.get('activation', 'relu')}"


def error_detail(response: httpx.Response) -> str:
    """The server's ``detail`` as one line (validation errors as ``field: message; ...``)."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text or response.reason_phrase
    if isinstance(detail, list):
        detail = "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', []) if part != 'body')}: {item.get('msg', item)}"
            if isinstance(item, dict)
            else str(item)
            for item in detail
        )
    return " ".join(str(detail).split())


def parse_event_stream(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Server-sent events as ``(event name, JSON data)``; comments (heartbeats) are skipped."""
    event = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        yield event, json.loads("\n".join(data))


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``["epochs=3", "states.synthetic.seed=7"]`` -> ``{"epochs": 3, "states": {"synthetic": {"seed": 7}}}``.

    A value is JSON when it parses as JSON (numbers, booleans, null, objects,
    lists), else a string; dots in the key nest objects.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key.strip():
            raise ClientError(f"--param {pair!r}: expected KEY=VALUE")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        *parents, leaf = key.strip().split(".")
        target = params
        for depth, name in enumerate(parents):
            target = target.setdefault(name, {})
            if not isinstance(target, dict):
                raise ClientError(
                    f"--param {key}: {'.'.join(parents[: depth + 1])} is already set to {json.dumps(target)}"
                )
        target[leaf] = value
    return params


# --- rendering -----------------------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain left-aligned text table."""
    cells = [[format_value(cell) for cell in row] for row in rows]
    widths = [max(len(str(header)), *(len(row[index]) for row in cells)) for index, header in enumerate(headers)]
    lines = ["  ".join(str(header).ljust(width) for header, width in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def progress_line(snapshot: dict[str, Any]) -> str:
    """``job_x distill [#######-----]  58% running  distill: epoch 7/12  trials 3/8``."""
    fraction = max(0.0, min(1.0, float(snapshot.get("progress") or 0.0)))
    filled = round(fraction * PROGRESS_BAR_WIDTH)
    parts = [
        snapshot["id"],
        snapshot["kind"],
        f"[{'#' * filled}{'-' * (PROGRESS_BAR_WIDTH - filled)}]",
        f"{fraction * 100:3.0f}%",
        snapshot["status"],
    ]
    if snapshot.get("stage") and snapshot["stage"] != snapshot["status"]:
        parts.append(snapshot["stage"])
    if snapshot.get("children_total"):
        label = "trials" if snapshot["kind"] == "search" else "children"
        parts.append(f"{label} {snapshot['children_finished']}/{snapshot['children_total']}")
    if snapshot.get("error"):
        parts.append(f"error: {snapshot['error']}")
    return "  ".join(parts)


def render_report(report: dict[str, Any]) -> str:
    """The report's summary: verdict, checks with thresholds, its figures, and a leaderboard if it has one.

    Which figures a report shows is the server's ``figures`` field (``app.contracts.report_models``),
    the same as the dashboard's.
    """
    body = report["body"]
    verdict = "PASSED" if report["passed"] else "FAILED"
    blocks = [f"report {report['id']}  {report['kind']}  job {report['job_id']}  {verdict}"]
    checks = body.get("checks") or {}
    if checks:
        check_rows = [
            (
                name,
                check["value"],
                check["threshold"],
                "pass" if check["passed"] else "FAIL",
                "gates" if check["gates"] else "info",
            )
            for name, check in checks.items()
        ]
        blocks.append(table(("check", "value", "threshold", "result", "role"), check_rows))
    figures = [(figure["name"], figure["value"]) for figure in body["figures"]]
    if figures:
        blocks.append(table(("figure", "value"), figures))
    leaderboard = body.get("leaderboard")
    if leaderboard:
        leaderboard_rows = [
            (
                row["rank"],
                row["trial_id"],
                row["primary_metric"],
                row["child_vs_parent_a_agreement"],
                row["child_vs_parent_b_agreement"],
                "parent" if row["is_parent_baseline"] else ("degenerate" if row["degenerate"] else ""),
            )
            for row in leaderboard[:LEADERBOARD_ROWS_SHOWN]
        ]
        blocks.append(table(("rank", "trial", "primary", "agree A", "agree B", "note"), leaderboard_rows))
    return "\n\n".join(blocks)


def render_lineage(lineage: dict[str, Any]) -> str:
    """The ancestor graph as an indented tree, root first; a node met twice is expanded once."""
    nodes = {node["id"]: node for node in lineage["nodes"]}
    parents: dict[str, list[dict[str, Any]]] = {}
    for edge in lineage["edges"]:
        parents.setdefault(edge["child"], []).append(edge)

    def describe(node_id: str) -> str:
        node = nodes.get(node_id, {})
        arch = node.get("arch") or {}
        shape = arch_label(arch) if arch else ""
        return "  ".join(part for part in (node_id, node.get("name") or "", node.get("format", ""), shape) if part)

    lines = [describe(lineage["root"])]
    expanded = {lineage["root"]}

    def walk(child_id: str, indent: str) -> None:
        edges = parents.get(child_id, [])
        for index, edge in enumerate(edges):
            last = index == len(edges) - 1
            seen = edge["parent"] in expanded
            job = f"  by {edge['job_id']}" if edge.get("job_id") else ""
            lines.append(
                f"{indent}{'└── ' if last else '├── '}{edge['role']}: "
                f"{describe(edge['parent'])}{job}{'  (see above)' if seen else ''}"
            )
            if not seen:
                expanded.add(edge["parent"])
                walk(edge["parent"], indent + ("    " if last else "│   "))

    walk(lineage["root"], "")
    return "\n".join(lines)


# --- commands ------------------------------------------------------------------------------------------------


class ProgressDisplay:
    """One progress line, redrawn in place on a terminal, one line per change otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.interactive = stream.isatty()
        self.last_line = ""

    def update(self, snapshot: dict[str, Any]) -> None:
        line = progress_line(snapshot)
        if line == self.last_line:
            return
        if self.interactive:
            self.stream.write("\r" + line.ljust(len(self.last_line)))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last_line = line

    def close(self) -> None:
        if self.interactive and self.last_line:
            self.stream.write("\n")
            self.stream.flush()


def follow(client: RecombClient, job_id: str, display: ProgressDisplay) -> dict[str, Any]:
    """Show the job's progress until it finishes; returns its last snapshot.

    A stream that breaks off (an API process restarting) is re-opened a few
    times; the server always starts a stream with the current state.
    """
    reconnects = 0
    while True:
        received = False
        try:
            for event, data in client.events(job_id):
                received = True
                if event == "gone":
                    raise ClientError(f"job {job_id} no longer exists")
                if event == "job":
                    display.update(data)
                    if data["status"] in TERMINAL_STATUSES:
                        return data
        except StreamInterrupted:
            if not received and reconnects == 0:
                raise
        reconnects += 1
        if reconnects > STREAM_RECONNECTS:
            raise ClientError(
                f"lost the event stream of job {job_id} {STREAM_RECONNECTS} times; try `recomb watch {job_id}` again"
            )
        time.sleep(RECONNECT_PAUSE_S)


def watch_and_report(client: RecombClient, job_id: str, out: TextIO, err: TextIO) -> int:
    """Follow a job, then print its report's summary; 0 only if it succeeded and its report passed."""
    display = ProgressDisplay(err)
    try:
        final = follow(client, job_id, display)
    finally:
        display.close()
    report = client.get(f"/reports/{final['report_id']}") if final.get("report_id") else None
    if report is not None:
        out.write(render_report(report) + "\n")
    if final["status"] != "succeeded":
        err.write(f"job {job_id} {final['status']}{': ' + final['error'] if final.get('error') else ''}\n")
        return EXIT_NOT_PASSED
    return EXIT_OK if report is None or report["passed"] else EXIT_NOT_PASSED


def cmd_submit(args: argparse.Namespace) -> int:
    client = RecombClient.from_environment(args.url)
    job = client.submit(args.kind, parse_params(args.param))
    sys.stdout.write(job["id"] + "\n")
    sys.stdout.flush()
    return watch_and_report(client, job["id"], sys.stdout, sys.stderr) if args.watch else EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    return watch_and_report(RecombClient.from_environment(args.url), args.job, sys.stdout, sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    report = RecombClient.from_environment(args.url).report_for(args.id)
    sys.stdout.write((json.dumps(report, indent=2) if args.json else render_report(report)) + "\n")
    return EXIT_OK if report["passed"] else EXIT_NOT_PASSED


def cmd_lineage(args: argparse.Namespace) -> int:
    lineage = RecombClient.from_environment(args.url).get(f"/checkpoints/{args.checkpoint}/lineage")
    sys.stdout.write((json.dumps(lineage, indent=2) if args.json else render_lineage(lineage)) + "\n")
    return EXIT_OK


LISTINGS = {
    "jobs": (
        ("id", "kind", "status", "progress", "stage", "created"),
        lambda job: (
            job["id"],
            job["kind"],
            job["status"],
            f"{job['progress'] * 100:.0f}%",
            job["stage"],
            job["created_at"][:19],
        ),
    ),
    "checkpoints": (
        ("id", "name", "format", "arch", "bytes", "created by", "created"),
        lambda ckpt: (
            ckpt["id"],
            ckpt["name"],
            ckpt["format"],
            arch_label(ckpt["arch"]),
            ckpt["size_bytes"],
            ckpt["created_by_job"],
            ckpt["created_at"][:19],
        ),
    ),
    "reports": (
        ("id", "kind", "passed", "job", "created"),
        lambda report: (report["id"], report["kind"], report["passed"], report["job_id"], report["created_at"][:19]),
    ),
}


def cmd_ls(args: argparse.Namespace) -> int:
    filters = {"limit": args.limit}
    if args.resource in ("jobs", "reports"):
        filters["kind"] = args.kind
    if args.resource == "jobs":
        filters["status"] = args.status
    page = RecombClient.from_environment(args.url).get(f"/{args.resource}", **filters)
    headers, row_of = LISTINGS[args.resource]
    sys.stdout.write(table(headers, [row_of(item) for item in page["items"]]) + "\n")
    if page["total"] > len(page["items"]):
        sys.stdout.write(f"({len(page['items'])} of {page['total']}; --limit for more)\n")
    return EXIT_OK


def run_client_command(handler):
    """Wrap a command so a ``ClientError`` is one line on stderr and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        # httpx logs every request at INFO; a client prints its own results.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        try:
            return handler(args)
        except ClientError as error:
            sys.stderr.write(f"recomb: {error}\n")
            return EXIT_ERROR
        except KeyboardInterrupt:
            return 130

    return run


def add_client_commands(commands: argparse._SubParsersAction) -> None:
    """Register submit, watch, report, lineage and ls on the ``recomb`` parser."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument(
        "--url",
        default=None,
        help=f"the server (default: $RECOMB_URL or {DEFAULT_URL}); the API key comes from $RECOMB_API_KEY",
    )

    submit = commands.add_parser("submit", parents=[server], help="queue a job (prints its id)")
    submit.add_argument("kind", help="job kind, e.g. distill, ptq, crossover, search")
    submit.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a job parameter; JSON values, dotted keys nest (states.synthetic.seed=3)",
    )
    submit.add_argument(
        "--watch",
        "-w",
        action="store_true",
        help="follow it with a progress bar and print its report; exit 0 only if it succeeded and passed",
    )
    submit.set_defaults(handler=run_client_command(cmd_submit))

    watch = commands.add_parser(
        "watch", parents=[server], help="follow a job with a progress bar, then print its report"
    )
    watch.add_argument("job")
    watch.set_defaults(handler=run_client_command(cmd_watch))

    report = commands.add_parser("report", parents=[server], help="print a report's summary (by report id or job id)")
    report.add_argument("id", help="a report id (rep_...) or a job id (job_...)")
    report.add_argument("--json", action="store_true", help="the whole report as JSON")
    report.set_defaults(handler=run_client_command(cmd_report))

    lineage = commands.add_parser("lineage", parents=[server], help="print a checkpoint's ancestor tree")
    lineage.add_argument("checkpoint")
    lineage.add_argument("--json", action="store_true", help="the graph as JSON")
    lineage.set_defaults(handler=run_client_command(cmd_lineage))

    listing = commands.add_parser("ls", parents=[server], help="list jobs, checkpoints or reports, newest first")
    listing.add_argument("resource", choices=sorted(LISTINGS))
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--kind", default=None, help="jobs and reports: only this kind")
    listing.add_argument(
        "--status", default=None, help="jobs only: queued, running, waiting, succeeded, failed, cancelled"
    )
    listing.set_defaults(handler=run_client_command(cmd_ls))
