"""``recomb ping-worker``, the worker container's healthcheck, against the running workers on both brokers."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def ping(stack, name: str, timeout_s: float) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "app.cli.commands", "ping-worker", "--name", name, "--timeout", str(timeout_s)]
    return subprocess.run(argv, env=stack.env, cwd=stack.root, capture_output=True, text=True, timeout=60)


def test_a_running_worker_answers_and_an_absent_one_does_not(stack):
    names = [
        process.args[process.args.index("--name") + 1]
        for name, process in stack.processes.items()
        if name.startswith("worker")
    ]
    # A worker answers between jobs; one of the stack's workers is idle unless both are still busy with earlier tests' jobs.
    answers = {name: ping(stack, name, timeout_s=10) for name in names}
    answered = [name for name, answer in answers.items() if answer.returncode == 0]
    assert answered, f"{answers}\n{stack.logs()}"
    assert answers[answered[0]].stdout.startswith(f"{answered[0]}@") and answers[answered[0]].stdout.strip().endswith(
        ": pong"
    )

    silent = ping(stack, "gone", timeout_s=1)
    assert silent.returncode == 1
    assert "gone@" in silent.stderr and "did not answer within 1s" in silent.stderr
