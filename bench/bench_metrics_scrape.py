"""What one ``/metrics`` scrape costs as finished jobs pile up; writes bench/results/metrics_scrape.json.

Run: ``.venv/bin/python bench/bench_metrics_scrape.py --label totals`` (``--label`` names the collector measured,
e.g. ``before`` on a commit that still aggregated every finished job at scrape time). For 1k, 10k and 100k finished jobs (kinds and
statuses mixed, durations from 50 ms to an hour) in a PostgreSQL database of its own and in a SQLite file, it times
``render_metrics`` (all its queries, the histogram and the text exposition; the broker is the embedded one) over
``REPEATS`` scrapes. Results of every label are kept side by side in the JSON file.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.service.collector import render_metrics  # noqa: E402
from app.service.db import engine_for  # noqa: E402
from app.service.job_totals import backfill  # noqa: E402
from app.service.queue import make_celery  # noqa: E402
from app.service.tables import JobStatus, utcnow  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench.common import RESULTS_DIR, summarise_ms, write_result  # noqa: E402
from migrations import upgrade  # noqa: E402
from tests.integration.stack import POSTGRES_ADMIN_URL  # noqa: E402

SIZES = (1_000, 10_000, 100_000)
REPEATS = 10
KINDS = ("distill", "ptq", "crossover", "finetune", "validate-distillation", "search-trial")
STATUSES = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)
INSERT_BATCH = 5_000


@contextmanager
def postgres_database() -> Iterator[str]:
    import psycopg

    name = f"recomb_bench_metrics_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    finally:
        engine_for.cache_clear()
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def add_finished_jobs(database_url: str, start: int, count: int) -> None:
    """``count`` finished jobs, seeded by their index so every run and label scrapes the same rows, then counted into
    the running totals the way the migration counts stored history.
    """
    engine = sa.create_engine(database_url)
    jobs = sa.MetaData()
    jobs.reflect(engine, only=["jobs"])
    table = jobs.tables["jobs"]
    now = utcnow()
    with engine.begin() as connection:
        for batch_start in range(start, start + count, INSERT_BATCH):
            rows = []
            for index in range(batch_start, min(batch_start + INSERT_BATCH, start + count)):
                draw = random.Random(index)
                finished_at = now - timedelta(minutes=draw.uniform(0, 60 * 24 * 30))
                rows.append(
                    {
                        "id": f"job_{index:020x}",
                        "kind": draw.choice(KINDS),
                        "params": {},
                        "status": draw.choice(STATUSES).name,
                        "progress": 1.0,
                        "stage": "done",
                        "attempts": 1,
                        "cancel_requested": False,
                        "owner": "",
                        "created_at": finished_at - timedelta(seconds=10),
                        "started_at": finished_at - timedelta(seconds=10 ** draw.uniform(-1.3, 3.6)),
                        "finished_at": finished_at,
                    }
                )
            connection.execute(table.insert(), rows)
        backfill(connection)
    engine.dispose()


def time_scrapes(settings: Settings) -> dict:
    celery = make_celery(settings)
    render_metrics(settings, celery)  # warm: connections, statement caches
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        render_metrics(settings, celery)
        samples.append(time.perf_counter() - started)
    return summarise_ms(samples)


def measure(database_url: str, data_dir: Path) -> dict:
    upgrade(database_url)
    settings = Settings(data_dir=data_dir, database_url=database_url, broker_url=None, api_keys="")
    results, stored = {}, 0
    for size in SIZES:
        add_finished_jobs(database_url, stored, size - stored)
        stored = size
        results[str(size)] = time_scrapes(settings)
        print(f"{database_url.split(':')[0]} {size}: {results[str(size)]['median_ms']:.1f} ms", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="which collector this run measures, e.g. before or after")
    label = parser.parse_args().label
    with tempfile.TemporaryDirectory() as root:
        with postgres_database() as postgres_url:
            postgresql = measure(postgres_url, Path(root) / "pg")
        sqlite = measure(f"sqlite:///{root}/metrics.db", Path(root) / "sqlite")
    path = RESULTS_DIR / "metrics_scrape.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else {}
    runs[label] = {"repeats": REPEATS, "postgresql": postgresql, "sqlite": sqlite}
    write_result("metrics_scrape", {"unit": "one scrape, ms, by finished jobs stored", "runs": runs})


if __name__ == "__main__":
    main()
