"""Cooperative interruption of long-running work.

Every long-running function in ``core`` takes ``interrupt: Interrupt | None``:
a callable it invokes often inside its long loops (every training step,
latency repeat, throughput batch, rollout step, calibration batch,
evaluation chunk, unit selection, search trial). It returns to let the work
go on and raises to abort it; the exception propagates unchanged, so the
caller decides what it means (a job runner raises "cancelled" or "over its
time limit"). The callable is on the hot path: keep it to a flag test and a
clock read.
"""

from __future__ import annotations

from collections.abc import Callable

Interrupt = Callable[[], None]


def never() -> None:
    """The interrupt of work that nobody stops."""


def checker(interrupt: Interrupt | None) -> Interrupt:
    """``interrupt``, or ``never`` when None: loops call the result without testing for None."""
    return never if interrupt is None else interrupt
