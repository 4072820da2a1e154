"""A pass run every few seconds on a daemon thread of the worker process (the reconciler, the webhook sender)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.exc import OperationalError


def start_periodic(
    name: str, interval_s: float, run_pass: Callable[[], object], stop: threading.Event, log: logging.Logger
) -> threading.Thread:
    """Run ``run_pass`` every ``interval_s`` until ``stop`` is set; a failed pass is logged and the next one runs."""

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                run_pass()
            except OperationalError:
                log.warning("%s: database unreachable", name)
            except Exception:
                log.exception("%s pass failed", name)

    thread = threading.Thread(target=loop, daemon=True, name=name.replace(" ", "-"))
    thread.start()
    return thread
