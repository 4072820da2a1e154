"""Run core's tensor work on one intra-op thread.

Results then do not depend on the caller's thread setting: reductions split
across threads sum in a different order, so a student distilled at 2 torch
threads differed from one distilled at 1 by up to 5e-7 and every checksum
downstream changed. On these tiny networks one thread is also the fastest
setting (a distillation took 0.37 s at 1 thread and 1.7-7.8 s at 2-4 on a
busy 2-core machine; per-operator thread hand-offs dwarf the arithmetic).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import torch

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def one_thread() -> Iterator[None]:
    """Set torch to one intra-op thread for the block and restore the caller's setting after it."""
    previous = torch.get_num_threads()
    if previous != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if previous != 1:
            torch.set_num_threads(previous)


def single_threaded(function: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of ``one_thread`` for a stage's entry point."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with one_thread():
            return function(*args, **kwargs)

    return wrapper
