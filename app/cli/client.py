"""``RecombClient``, the Python client of the recomb HTTP API, and the ``recomb`` client commands built on it:
submit (with per-kind ``--help``), watch, report, lineage, ls, upload, synthetic, download, export, cancel, rerun,
logs, tag, compare and models.

They talk to a running server at ``RECOMB_URL`` (default
``http://127.0.0.1:8000``) with ``RECOMB_API_KEY`` as a bearer token, follow
jobs over ``GET /jobs/{id}/events`` (server-sent events) and print plain
tables. Every failure to talk to the server is one line on stderr and exit
code 2; a job that did not succeed, or whose report did not pass, is exit
code 1. This module imports no torch (the job kinds' params models are
torch-free), so the commands start fast.
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
from pathlib import Path
from typing import Any, TextIO

import httpx

from app.contracts.job_kinds import JOB_KINDS, PUBLIC_KINDS

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
EXIT_OK, EXIT_NOT_PASSED, EXIT_ERROR = 0, 1, 2
REQUEST_TIMEOUT_S = 30.0  # above the server's 10 s event-stream heartbeat
STREAM_RECONNECTS = 5
# A busy server answers 429 (or 503) with Retry-After: the client waits as told, a few times, before giving up.
BUSY_RETRIES = 5
BUSY_WAIT_MAX_S = 10.0
RECONNECT_PAUSE_S = 1.0
LOG_POLL_S = 1.0
PROGRESS_BAR_WIDTH = 24
EXPORT_SUFFIXES = {"onnx": "onnx", "pt": "pt", "safetensors": "safetensors"}
LEADERBOARD_ROWS_SHOWN = 10


class ClientError(Exception):
    """Every failure of a client call, shown to a user as one line (no traceback).

    ``status_code`` is the HTTP status the server answered (None when it could not
    be reached); ``detail`` is its ``detail`` message as one line.
    """

    def __init__(self, detail: str, status_code: int | None = None) -> None:
        super().__init__(f"{detail} ({status_code})" if status_code is not None else detail)
        self.detail = detail
        self.status_code = status_code


class RecombClient:
    """A typed client of the recomb HTTP API: one method per operation, each returning the parsed JSON answer.

    ``RecombClient("http://host:8000", api_key="...")``, or
    ``RecombClient.from_environment()`` for ``RECOMB_URL`` and ``RECOMB_API_KEY``.
    A server that answers 429 or 503 with ``Retry-After`` is waited for, a
    few times; any other failure raises ``ClientError`` with the status and
    the server's detail. Downloads return the file's bytes.
    """

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

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **params: Any) -> Any:
        """``GET path`` with the query ``params`` that are not None (a list value repeats its key)."""
        return self._request("GET", path, params={key: value for key, value in params.items() if value is not None})

    # --- jobs -------------------------------------------------------------------------------------------------

    def submit(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """Queue a job of ``kind`` (``POST /jobs/{kind}``); returns the job record."""
        # A key of its own, so a submission retried after a 429 or a dropped connection queues one job, not two.
        return self._request("POST", f"/jobs/{kind}", json=params, headers={"Idempotency-Key": uuid.uuid4().hex})

    def get_job(self, job_id: str) -> dict[str, Any]:
        """One job: status, progress, params, error, report id, outputs, children."""
        return self.get(f"/jobs/{job_id}")

    def list_jobs(self, **filters: Any) -> dict[str, Any]:
        """A page of jobs, newest first (``kind``, ``status``, ``parent_job_id``, ``limit``, ``offset``...)."""
        return self.get("/jobs", **filters)

    def wait_job(self, job_id: str, timeout_s: float = 60.0, poll_s: float = 0.05) -> dict[str, Any]:
        """Poll the job until it finishes; returns its record. ``TimeoutError`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get_job(job_id)
            if job["status"] in TERMINAL_STATUSES:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s:g} s")
            time.sleep(poll_s)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job and its children (``POST /jobs/{id}/cancel``); returns the job record."""
        return self._request("POST", f"/jobs/{job_id}/cancel")

    def rerun(self, job_id: str) -> dict[str, Any]:
        """Queue a new job of the same kind with the same params (``POST /jobs/{id}/rerun``); returns the new job."""
        return self._request("POST", f"/jobs/{job_id}/rerun", headers={"Idempotency-Key": uuid.uuid4().hex})

    def logs(self, job_id: str, after: int = 0, limit: int | None = None) -> dict[str, Any]:
        """A page of the job's log lines after line ``after``: ``{items, next_after, job_status}``."""
        return self.get(f"/jobs/{job_id}/logs", after=after, limit=limit)

    def follow_logs(self, job_id: str, after: int = 0, poll_s: float = LOG_POLL_S) -> Iterator[dict[str, Any]]:
        """Every log line of the job after ``after``, as it is written, until the job has finished."""
        finished_reads = 0
        while True:
            page = self.logs(job_id, after)
            yield from page["items"]
            after = page["next_after"]
            if page["items"]:
                continue  # more may be waiting: read on at once
            if page["job_status"] in TERMINAL_STATUSES:
                # The line recording the job's end follows its status by a moment: one more read after it.
                finished_reads += 1
                if finished_reads > 1:
                    return
            time.sleep(poll_s)

    def tag_job(self, job_id: str, tags: list[str] | None = None, name: str | None = None) -> dict[str, Any]:
        """Set a job's tags and/or name (``PATCH /jobs/{id}``); returns the job record."""
        return self._request("PATCH", f"/jobs/{job_id}", json=_tag_body(tags, name))

    def report_for(self, identifier: str) -> dict[str, Any]:
        """A report by its id, or the report of a job id."""
        if identifier.startswith("job_"):
            job = self.get_job(identifier)
            if not job["report_id"]:
                raise ClientError(
                    f"job {identifier} has no report ({job['status']}{': ' + job['error'] if job['error'] else ''})"
                )
            identifier = job["report_id"]
        return self.get(f"/reports/{identifier}")

    def compare_reports(self, report_ids: Sequence[str]) -> dict[str, Any]:
        """The figures of several reports side by side, with their differences (``GET /reports/compare``)."""
        return self.get("/reports/compare", ids=",".join(report_ids))

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

    # --- checkpoints and states -------------------------------------------------------------------------------

    def upload_checkpoint(
        self,
        path: str | Path,
        name: str | None = None,
        arch: dict[str, Any] | None = None,
        experiment: str | None = None,
        tags: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Upload a network file (safetensors, a .pt state dict or a Stable-Baselines3 .zip); returns its record."""
        form: dict[str, str | list[str] | None] = {
            "name": name,
            "arch": json.dumps(arch) if arch is not None else None,
            "experiment": experiment,
            "tags": list(tags) or None,
        }
        return self._upload("/checkpoints", {"file": path}, form)

    def upload_states(
        self, path: str | Path, actions: str | Path | None = None, name: str | None = None
    ) -> dict[str, Any]:
        """Upload a state buffer (.npy of shape (n, input_dim), or .npz), optionally with the actions taken."""
        return self._upload("/states", {"file": path, "actions": actions}, {"name": name})

    def create_synthetic(
        self,
        seed: int,
        arch: dict[str, Any] | None = None,
        name: str | None = None,
        experiment: str | None = None,
        tags: Sequence[str] = (),
    ) -> dict[str, Any]:
        """A randomly initialised network of ``arch`` (the reference layout when None) from ``seed``."""
        given = {"arch": arch, "name": name, "experiment": experiment, "tags": list(tags) or None}
        body = {"seed": seed} | {key: value for key, value in given.items() if value is not None}
        return self._request("POST", "/checkpoints/synthetic", json=body)

    def get_checkpoint(self, checkpoint_id: str) -> dict[str, Any]:
        return self.get(f"/checkpoints/{checkpoint_id}")

    def lineage(self, checkpoint_id: str) -> dict[str, Any]:
        """The checkpoint's ancestor graph: ``{root, nodes, edges}``."""
        return self.get(f"/checkpoints/{checkpoint_id}/lineage")

    def download_checkpoint(self, checkpoint_id: str) -> bytes:
        """The stored safetensors file."""
        return self._send("GET", f"/checkpoints/{checkpoint_id}/file").content

    def export_checkpoint(self, checkpoint_id: str, format: str) -> bytes:
        """A deployable copy: ``onnx``, ``pt`` (a state dict in the layout it came from) or ``safetensors``."""
        return self._send("GET", f"/checkpoints/{checkpoint_id}/export", params={"format": format}).content

    def tag_checkpoint(
        self, checkpoint_id: str, tags: list[str] | None = None, name: str | None = None
    ) -> dict[str, Any]:
        """Set a checkpoint's tags and/or name (``PATCH /checkpoints/{id}``); returns its record."""
        return self._request("PATCH", f"/checkpoints/{checkpoint_id}", json=_tag_body(tags, name))

    # --- model registry ---------------------------------------------------------------------------------------

    def create_model(self, name: str) -> dict[str, Any]:
        """Register a model name (``POST /models``)."""
        return self._request("POST", "/models", json={"name": name})

    def create_model_version(self, name: str, checkpoint_id: str) -> dict[str, Any]:
        """Add a checkpoint as the model's next version (1, 2, ...)."""
        return self._request("POST", f"/models/{name}/versions", json={"checkpoint_id": checkpoint_id})

    def set_model_alias(self, name: str, alias: str, version: int) -> dict[str, Any]:
        """Point ``alias`` (e.g. ``production``) at a version of the model."""
        return self._request("PUT", f"/models/{name}/aliases/{alias}", json={"version": version})

    def get_model_alias(self, name: str, alias: str) -> dict[str, Any]:
        """The version ``alias`` points at, with its checkpoint."""
        return self.get(f"/models/{name}/aliases/{alias}")

    # --- transport --------------------------------------------------------------------------------------------

    def _upload(
        self, path: str, files: dict[str, str | Path | None], form: dict[str, str | list[str] | None]
    ) -> dict[str, Any]:
        parts = {}
        for field, file_path in files.items():
            if file_path is None:
                continue
            try:
                parts[field] = (Path(file_path).name, Path(file_path).read_bytes())
            except OSError as error:
                raise ClientError(f"cannot read {file_path}: {error.strerror or error}") from error
        data = {key: value for key, value in form.items() if value is not None}
        # Uploads are retried after a 429 like any call: the key makes a retry return the first record.
        return self._request("POST", path, files=parts, data=data, headers={"Idempotency-Key": uuid.uuid4().hex})

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
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
        return response

    def _unreachable(self, error: httpx.TransportError) -> str:
        reason = str(error) or type(error).__name__
        return f"cannot reach the recomb server at {self.base_url} ({reason}); is it running? (set RECOMB_URL)"

    def _check(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        if response.status_code == 401:
            if self.api_key:
                raise ClientError(f"{self.base_url} refused the API key in RECOMB_API_KEY", 401)
            raise ClientError(f"{self.base_url} needs an API key: set RECOMB_API_KEY", 401)
        raise ClientError(error_detail(response), response.status_code)


def _tag_body(tags: list[str] | None, name: str | None) -> dict[str, Any]:
    """The PATCH body: only what is being changed."""
    if tags is None and name is None:
        raise ClientError("nothing to change: give tags, a name, or both")
    return {key: value for key, value in (("tags", tags), ("name", name)) if value is not None}


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


# --- job kinds' parameters ------------------------------------------------------------------------------------

BOUND_SYMBOLS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))


def kind_parameters(kind: str) -> list[tuple[str, str, str, str]]:
    """``(name, description, default, bounds)`` of each parameter of a job kind, from its params model.

    The same JSON schema the OpenAPI document shows for ``POST /jobs/{kind}``, so the
    help needs no server and cannot disagree with it.
    """
    model = JOB_KINDS[kind].params
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    rows = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        prop = schema["properties"][key]
        if key in required:
            default = "required"
        elif "default" in prop:
            default = json.dumps(prop["default"])
        else:
            default = "set by the server (see the description)"
        rows.append((key, prop.get("description", ""), default, schema_bounds(prop, schema.get("$defs", {}))))
    return rows


def schema_bounds(prop: dict[str, Any], definitions: dict[str, Any]) -> str:
    """What values a property takes: ``>= 1, <= 100000``, ``one of kl, mse``, or its type."""
    options = [option for option in prop.get("anyOf", [prop]) if option.get("type") != "null"]
    described = []
    for option in options:
        if "$ref" in option:
            described.append(f"object ({option['$ref'].rsplit('/', 1)[-1]})")
        elif "enum" in option:
            described.append("one of " + ", ".join(str(value) for value in option["enum"]))
        elif "const" in option:
            described.append(json.dumps(option["const"]))
        else:
            items = option.get("prefixItems") or ([option["items"]] if isinstance(option.get("items"), dict) else [])
            target = items[0] if items else option
            limits = [f"{symbol} {target[keyword]}" for keyword, symbol in BOUND_SYMBOLS if keyword in target]
            value_type = option.get("type", "value")
            if items:
                value_type = f"array of {items[0].get('type', 'value')}"
            described.append(f"{value_type} {', '.join(limits)}" if limits else value_type)
    nullable = any(option.get("type") == "null" for option in prop.get("anyOf", []))
    return " | ".join(described) + (" | null" if nullable else "")


def kind_help(kind: str) -> str:
    """The parameters of a job kind as a table for ``recomb submit KIND --help``."""
    rows = kind_parameters(kind)
    name_width = max(len(name) for name, *_ in rows)
    lines = [f"parameters of {kind} (give each as --param NAME=VALUE):"]
    for name, description, default, bounds in rows:
        lines.append(f"  {name.ljust(name_width)}  {description}")
        lines.append(f"  {' ' * name_width}  default: {default}; values: {bounds}")
    return "\n".join(lines)


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
    job = client.submit(args.kind, parse_params(args.param) | labels_of(args))
    sys.stdout.write(job["id"] + "\n")
    sys.stdout.flush()
    return watch_and_report(client, job["id"], sys.stdout, sys.stderr) if args.watch else EXIT_OK


def labels_of(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--experiment`` and ``--tag`` options as body fields (only those given)."""
    labels = {"experiment": args.experiment, "tags": args.tag or None}
    return {key: value for key, value in labels.items() if value is not None}


def cmd_rerun(args: argparse.Namespace) -> int:
    client = RecombClient.from_environment(args.url)
    job = client.rerun(args.job)
    sys.stdout.write(job["id"] + "\n")
    sys.stdout.flush()
    return watch_and_report(client, job["id"], sys.stdout, sys.stderr) if args.watch else EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    job = RecombClient.from_environment(args.url).cancel(args.job)
    sys.stdout.write(f"{job['id']}  {job['status']}{'  (cancel requested)' if job['cancel_requested'] else ''}\n")
    return EXIT_OK


def log_line(line: dict[str, Any]) -> str:
    """``2026-12-04 10:00:00.123 INFO recomb.worker: message`` (a traceback keeps its own lines)."""
    when = line["logged_at"].replace("T", " ")[:23]
    return f"{when} {line['level']} {line['logger']}: {line['message']}"


def cmd_logs(args: argparse.Namespace) -> int:
    client = RecombClient.from_environment(args.url)
    if args.follow:
        lines: Iterator[dict[str, Any]] = client.follow_logs(args.job, args.after)
    else:
        lines = read_all_logs(client, args.job, args.after)
    for line in lines:
        sys.stdout.write(log_line(line) + "\n")
        sys.stdout.flush()
    return EXIT_OK


def read_all_logs(client: RecombClient, job_id: str, after: int) -> Iterator[dict[str, Any]]:
    """Every log line kept so far, page by page."""
    while True:
        page = client.logs(job_id, after)
        yield from page["items"]
        if not page["items"]:
            return
        after = page["next_after"]


def cmd_upload(args: argparse.Namespace) -> int:
    client = RecombClient.from_environment(args.url)
    if args.what == "states":
        if labels_of(args):
            raise ClientError("--experiment and --tag file checkpoints; a state buffer takes neither")
        record = client.upload_states(args.file, actions=args.actions, name=args.name)
        summary = f"{record['n']} x {record['dim']}{' with actions' if record['has_actions'] else ''}"
    else:
        arch = parse_json_option("--arch", args.arch)
        record = client.upload_checkpoint(args.file, name=args.name, arch=arch, **labels_of(args))
        summary = f"{record['format']}  {arch_label(record['arch'])}  from {record['source_format']}"
    sys.stdout.write(f"{record['id']}  {summary}\n")
    return EXIT_OK


def cmd_synthetic(args: argparse.Namespace) -> int:
    arch = parse_json_option("--arch", args.arch)
    record = RecombClient.from_environment(args.url).create_synthetic(
        args.seed, arch=arch, name=args.name, **labels_of(args)
    )
    sys.stdout.write(f"{record['id']}  {record['format']}  {arch_label(record['arch'])}\n")
    return EXIT_OK


def cmd_download(args: argparse.Namespace) -> int:
    client = RecombClient.from_environment(args.url)
    if args.format is None:
        data, suffix = client.download_checkpoint(args.checkpoint), "safetensors"
    else:
        data, suffix = client.export_checkpoint(args.checkpoint, args.format), EXPORT_SUFFIXES[args.format]
    target = Path(args.output or f"{args.checkpoint}.{suffix}")
    try:
        target.write_bytes(data)
    except OSError as error:
        raise ClientError(f"cannot write {target}: {error.strerror or error}") from error
    sys.stdout.write(f"{target}  {len(data)} bytes\n")
    return EXIT_OK


def cmd_tag(args: argparse.Namespace) -> int:
    client = RecombClient.from_environment(args.url)
    tags = args.tag if args.tag or args.clear else None
    tag = client.tag_job if args.what == "job" else client.tag_checkpoint
    record = tag(args.id, tags=tags, name=args.name)
    sys.stdout.write(json.dumps(record, indent=2) + "\n")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    comparison = RecombClient.from_environment(args.url).compare_reports(args.reports)
    sys.stdout.write((json.dumps(comparison, indent=2) if args.json else render_comparison(comparison)) + "\n")
    return EXIT_OK


def render_comparison(comparison: dict[str, Any]) -> str:
    """One row per figure: its value in each report, then each report's difference from the first."""
    ids = [report["id"] for report in comparison["reports"]]
    header = ["figure", *ids, *(f"diff {report_id}" for report_id in ids[1:])]
    rows = [
        [
            figure["name"],
            *(_cell(value) for value in figure["values"]),
            *(_cell(difference, signed=True) for difference in figure["differences"][1:]),
        ]
        for figure in comparison["figures"]
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def _cell(value: Any, signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+.4g}" if signed else f"{value:.4g}"
    return str(value)


def cmd_models(args: argparse.Namespace) -> int:
    client = RecombClient.from_environment(args.url)
    if args.action == "create":
        record = client.create_model(args.name)
    elif args.action == "add-version":
        record = client.create_model_version(args.name, args.checkpoint)
    elif args.action == "set-alias":
        record = client.set_model_alias(args.name, args.alias, args.version)
    else:
        record = client.get_model_alias(args.name, args.alias)
    sys.stdout.write(json.dumps(record, indent=2) + "\n")
    return EXIT_OK


def parse_json_option(option: str, text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ClientError(f"{option}: not JSON ({error})") from error
    if not isinstance(value, dict):
        raise ClientError(f"{option}: expected a JSON object, got {text}")
    return value


def cmd_watch(args: argparse.Namespace) -> int:
    return watch_and_report(RecombClient.from_environment(args.url), args.job, sys.stdout, sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    report = RecombClient.from_environment(args.url).report_for(args.id)
    sys.stdout.write((json.dumps(report, indent=2) if args.json else render_report(report)) + "\n")
    return EXIT_OK if report["passed"] else EXIT_NOT_PASSED


def cmd_lineage(args: argparse.Namespace) -> int:
    lineage = RecombClient.from_environment(args.url).lineage(args.checkpoint)
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
    """Register the client commands (submit, watch, report, ls, upload, logs, models, ...) on the ``recomb`` parser."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument(
        "--url",
        default=None,
        help=f"the server (default: $RECOMB_URL or {DEFAULT_URL}); the API key comes from $RECOMB_API_KEY",
    )
    watching = argparse.ArgumentParser(add_help=False)
    watching.add_argument(
        "--watch",
        "-w",
        action="store_true",
        help="follow it with a progress bar and print its report; exit 0 only if it succeeded and passed",
    )

    def command(name: str, handler: Any, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=[server, *parents], help=help, description=help)
        parser.set_defaults(handler=run_client_command(handler))
        return parser

    labelling = argparse.ArgumentParser(add_help=False)
    labelling.add_argument("--experiment", default=None, help="file it under this experiment (default: default)")
    labelling.add_argument("--tag", "-t", action="append", default=[], help="a tag (repeat for several)")

    submit = commands.add_parser(
        "submit", help="queue a job (prints its id); `recomb submit KIND --help` lists KIND's parameters"
    )
    kinds = submit.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind in PUBLIC_KINDS:
        submit_kind = kinds.add_parser(
            kind,
            parents=[server, watching, labelling],
            help=JOB_KINDS[kind].description,
            description=f"Queue a {kind} job: {JOB_KINDS[kind].description}.",
            epilog=kind_help(kind),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        submit_kind.add_argument(
            "--param",
            "-p",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a job parameter (listed below); JSON values, dotted keys nest (states.synthetic.seed=3)",
        )
        submit_kind.set_defaults(handler=run_client_command(cmd_submit))

    command("watch", cmd_watch, "follow a job with a progress bar, then print its report").add_argument("job")

    report = command("report", cmd_report, "print a report's summary (by report id or job id)")
    report.add_argument("id", help="a report id (rep_...) or a job id (job_...)")
    report.add_argument("--json", action="store_true", help="the whole report as JSON")

    lineage = command("lineage", cmd_lineage, "print a checkpoint's ancestor tree")
    lineage.add_argument("checkpoint")
    lineage.add_argument("--json", action="store_true", help="the graph as JSON")

    listing = command("ls", cmd_ls, "list jobs, checkpoints or reports, newest first")
    listing.add_argument("resource", choices=sorted(LISTINGS))
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--kind", default=None, help="jobs and reports: only this kind")
    listing.add_argument(
        "--status", default=None, help="jobs only: queued, running, waiting, succeeded, failed, cancelled"
    )

    command("cancel", cmd_cancel, "cancel a job and its children").add_argument("job")
    rerun = command(
        "rerun", cmd_rerun, "queue the same job again: same kind, same params (prints the new id)", watching
    )
    rerun.add_argument("job")

    logs = command("logs", cmd_logs, "print the log lines a worker kept while running a job")
    logs.add_argument("job")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until the job finishes")
    logs.add_argument("--after", type=int, default=0, help="only lines after this line id")

    upload = command(
        "upload", cmd_upload, "upload a network (checkpoint) or a state buffer (states); prints its id", labelling
    )
    upload.add_argument("what", choices=("checkpoint", "states"))
    upload.add_argument(
        "file", help="checkpoint: safetensors, .pt state dict or SB3 .zip; states: .npy (n, input_dim) or .npz"
    )
    upload.add_argument("--name", default=None)
    upload.add_argument("--arch", default=None, help='checkpoint only: JSON, e.g. {"activation": "tanh"}')
    upload.add_argument("--actions", default=None, help="states only: .npy of the actions taken, one per state")

    synthetic = command("synthetic", cmd_synthetic, "create a randomly initialised network; prints its id", labelling)
    synthetic.add_argument("--seed", type=int, required=True)
    synthetic.add_argument(
        "--arch", default=None, help='JSON, e.g. {"input_dim": 8, "hidden_sizes": [64, 64], "output_dim": 4}'
    )
    synthetic.add_argument("--name", default=None)

    saving = argparse.ArgumentParser(add_help=False)
    saving.add_argument("checkpoint")
    saving.add_argument("--output", "-o", default=None, help="the file to write (default: CHECKPOINT.SUFFIX)")
    command("download", cmd_download, "save a checkpoint's stored safetensors file", saving).set_defaults(format=None)
    export = command("export", cmd_download, "save a deployable copy: ONNX, a pt state dict or safetensors", saving)
    export.add_argument("--format", required=True, choices=sorted(EXPORT_SUFFIXES))

    tag = command("tag", cmd_tag, "set the tags and/or name of a job or a checkpoint")
    tag.add_argument("what", choices=("job", "checkpoint"))
    tag.add_argument("id")
    tag.add_argument("--tag", "-t", action="append", default=[], help="a tag (repeat for several); replaces the tags")
    tag.add_argument("--clear", action="store_true", help="remove every tag")
    tag.add_argument("--name", default=None)

    compare = command("compare", cmd_compare, "the figures of several reports side by side, with the differences")
    compare.add_argument("reports", nargs="+", metavar="REPORT")
    compare.add_argument("--json", action="store_true", help="the comparison as JSON")

    registry_help = "the model registry: names, numbered versions, movable aliases"
    models = commands.add_parser("models", help=registry_help, description=registry_help)
    models.set_defaults(handler=run_client_command(cmd_models))
    actions = models.add_subparsers(dest="action", required=True)

    def action(name: str, help: str, *arguments: str) -> argparse.ArgumentParser:
        # The server options on each action, so `recomb models create NAME --url URL` reads naturally.
        parser = actions.add_parser(name, parents=[server], help=help, description=help)
        for argument in arguments:
            parser.add_argument(argument)
        return parser

    action("create", "register a model name", "name")
    action("add-version", "add a checkpoint as the model's next version", "name", "checkpoint")
    action("set-alias", "point an alias (e.g. production) at a version", "name", "alias").add_argument(
        "version", type=int
    )
    action("alias", "the version an alias points at, with its checkpoint", "name", "alias")
