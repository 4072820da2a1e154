"""Resident memory of the API and a worker, and the API's start-up time, on the embedded stack.

Starts the real ``recomb api`` (one process) and one ``recomb worker`` as
subprocesses and reads ``VmRSS`` from ``/proc/<pid>/status`` (the process
and any children it started):

- ``api_started``: the API once ``/healthz`` answers;
- ``api_after_sequence``: after an upload (a ``torch.save`` state dict of an
  8-256-256-4 network), a synthesis, an ONNX and a ``.pt`` export, and one
  PTQ job run to ``succeeded``;
- ``worker_idle``: the worker once its memory has settled after start-up,
  before any job; ``worker_after_ptq``: after that PTQ job.

``startup_to_healthz_s``: seconds from spawning ``recomb api`` to the first
200 from ``/healthz``, median of ``--starts`` starts. ``--source`` runs the
processes from another checkout of the project (e.g. an export of ``main``),
so a change is measured against the code before it with the same
interpreter. Writes bench/results/memory.json (or ``--name``).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

from bench.common import write_result
from core.networks import QNetwork, QNetworkArch
from tests.integration.stack import Stack, embedded_stack

SETTLE_WINDOW_S = 2.0
SETTLE_TOLERANCE_KIB = 512
MIB = 1024


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` plus that of every descendant, in KiB."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1])
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += rss_kib(int(child))
    return total


def settled_rss_kib(pid: int, timeout_s: float = 60.0) -> int:
    """RSS once it has changed by less than ``SETTLE_TOLERANCE_KIB`` over ``SETTLE_WINDOW_S``."""
    deadline = time.monotonic() + timeout_s
    previous = rss_kib(pid)
    while time.monotonic() < deadline:
        time.sleep(SETTLE_WINDOW_S)
        current = rss_kib(pid)
        if abs(current - previous) < SETTLE_TOLERANCE_KIB:
            return current
        previous = current
    return previous


def with_source(stack: Stack, source: Path | None) -> Stack:
    if source is not None:
        stack.env["PYTHONPATH"] = str(source)
    return stack


def startup_seconds(root: Path, source: Path | None) -> float:
    stack = with_source(embedded_stack(root), source)
    root.mkdir(parents=True, exist_ok=True)
    stack.run("migrate")
    started = time.perf_counter()
    process = stack.spawn("api", "api", "--port", str(stack.port), "--processes", "1")
    try:
        with httpx.Client(base_url=stack.url, timeout=5.0) as client:
            while process.poll() is None:
                try:
                    if client.get("/healthz").status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        raise RuntimeError(f"the API exited during start-up:\n{stack.logs()}")
    finally:
        stack.stop()


def upload_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(QNetwork(QNetworkArch(hidden_size=256)).state_dict(), buffer)
    return buffer.getvalue()


def measure(root: Path, source: Path | None) -> dict:
    stack = with_source(embedded_stack(root), source)
    root.mkdir(parents=True, exist_ok=True)
    stack.start(workers=1)
    try:
        api, worker = stack.processes["api"].pid, stack.processes["worker1"].pid
        client = stack.client
        api_started = settled_rss_kib(api)
        worker_idle = settled_rss_kib(worker)
        uploaded = client.post("/checkpoints", files={"file": ("parent.pt", upload_bytes())})
        assert uploaded.status_code == 201, uploaded.text
        synthetic = client.post("/checkpoints/synthetic", json={"seed": 0})
        assert synthetic.status_code == 201, synthetic.text
        for export_format in ("onnx", "pt"):
            exported = client.get(f"/checkpoints/{uploaded.json()['id']}/export", params={"format": export_format})
            assert exported.status_code == 200, exported.text
        job = client.post("/jobs/ptq", json={"checkpoint_id": synthetic.json()["id"]}).json()
        finished = stack.wait_job(job["id"], timeout=120)
        assert finished["status"] == "succeeded", finished
        return {
            "api_started_mib": api_started / MIB,
            "api_after_sequence_mib": settled_rss_kib(api) / MIB,
            "worker_idle_mib": worker_idle / MIB,
            "worker_after_ptq_mib": settled_rss_kib(worker) / MIB,
        }
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--starts", type=int, default=5, help="API starts timed for the start-up median")
    parser.add_argument("--source", type=Path, default=None, help="run the service from this checkout")
    parser.add_argument("--name", default="memory", help="results file name under bench/results")
    args = parser.parse_args()
    source = args.source.resolve() if args.source else None
    with tempfile.TemporaryDirectory() as tmp:
        startups = [startup_seconds(Path(tmp) / f"start{index}", source) for index in range(args.starts)]
        rss = measure(Path(tmp) / "sequence", source)
    result = {
        "source": str(source) if source else "this checkout",
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        "sequence": "upload .pt (8-256-256-4), synthesis, ONNX and .pt export, one PTQ job",
        "startup_to_healthz_s": {
            "median": statistics.median(startups),
            "min": min(startups),
            "max": max(startups),
            "n": len(startups),
        },
        **{key: round(value, 1) for key, value in rss.items()},
        "targets_mib": {"api_after_sequence": 150, "worker_idle": 300},
    }
    write_result(args.name, result)


if __name__ == "__main__":
    sys.exit(main())
