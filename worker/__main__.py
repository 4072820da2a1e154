"""``python -m worker [--name NAME]``: one worker process (solo pool: one job at a time, one torch thread).

``recomb worker`` and ``recomb up`` start workers this way, so the command line never imports the worker.
"""

from __future__ import annotations

import argparse
import os

from app.logs import configure_logging
from app.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--name", default=None, help="the node name (name@host); default: celery@host")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_format == "json")
    # Jobs are batch work: on a machine shared with the API, the API's requests should get the CPU first.
    os.nice(settings.worker_niceness)
    from worker.celery_app import celery

    celery_argv = ["worker", "--pool=solo", f"--loglevel={settings.log_level}", "-Q", settings.queue]
    celery_argv += ["--without-gossip", "--without-mingle"]
    if args.name:
        celery_argv.append(f"--hostname={args.name}@%h")
    celery.worker_main(celery_argv)


if __name__ == "__main__":
    main()
