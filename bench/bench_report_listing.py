"""Listing reports and jobs by figure, tag and experiment at 100,000 jobs on PostgreSQL; writes
bench/results/report_listing.json.

Run: ``.venv/bin/python bench/bench_report_listing.py`` (PostgreSQL at ``RECOMB_TEST_POSTGRES``, default
``postgresql://postgres@127.0.0.1:5432/postgres``). A fresh database of its own is migrated to head and bulk-filled
(COPY) with ``N_JOBS`` succeeded jobs and their reports: 70 % distill, 30 % PTQ, bodies from the real 2.0 reports
of ``tests/data/reports_v1.json`` with their figures drawn anew per report (agreements in 0.5-1, losses, sizes),
``report_figures`` rows exactly as a worker writes them (``numeric_figures``), one of ``N_EXPERIMENTS``
experiments and 1-3 of ``N_TAGS`` tags per job; the database is vacuumed and analysed after the load, as
autovacuum would. Then each listing goes ``REPEATS`` times through the real app (``TestClient``, one warm-up
first); the JSON has median and p95 per listing, the row counts it matched, and the plans PostgreSQL chose
for the page and count queries (``EXPLAIN ANALYZE`` of the statements the app sent).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient  # noqa: E402

from app.contracts.report_models import numeric_figures, parse_report  # noqa: E402
from app.main import create_app  # noqa: E402
from app.service.db import get_engine  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench.common import summarise_ms, write_result  # noqa: E402
from migrations import upgrade  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN_URL = os.environ.get("RECOMB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
N_JOBS = 100_000
DISTILL_SHARE = 0.7
N_EXPERIMENTS = 20
N_TAGS = 40
REPEATS = 30
TARGET_MS = 100.0
AGREEMENT = "held_out.action_agreement"


def migration_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "migrations" / "versions" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def template_bodies() -> dict[str, dict]:
    """A real 2.0 body per kind (distill, ptq), as migration 0004 upgrades the stored 1.0 ones."""
    upgrade_body = migration_module("0004_report_schema_2").upgrade_body
    rows = json.loads((ROOT / "tests" / "data" / "reports_v1.json").read_text())
    return {row["kind"]: upgrade_body(row["kind"], row["body"]) for row in rows if row["kind"] in ("distill", "ptq")}


def drawn_body(template: dict, job_id: str, rng: random.Random) -> dict:
    """``template`` with this job's id and its figures drawn anew (agreements 0.5-1, losses and errors 0-0.5)."""
    body = json.loads(json.dumps(template))
    body["job_id"] = job_id
    held_out = body["held_out"]
    held_out["action_agreement"] = round(rng.uniform(0.5, 1.0), 4)
    for name in ("kl_divergence", "mse", "mae", "max_abs_error"):
        held_out[name] = round(rng.uniform(0.0, 0.5), 5)
    held_out["mean_cosine_similarity"] = round(rng.uniform(0.8, 1.0), 5)
    if body["kind"] == "distill":
        body["best_epoch"] = rng.randint(1, 50)
        body["best_val_loss"] = round(rng.uniform(0.001, 0.3), 5)
        body["elapsed_seconds"] = round(rng.uniform(0.5, 60.0), 3)
    else:
        body["size"]["file_compression_ratio"] = round(rng.uniform(2.0, 4.0), 4)
    body["passed"] = held_out["action_agreement"] >= 0.9
    return body


def copy_rows(cursor: psycopg.Cursor, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def fill(url: str, rng: random.Random) -> dict:
    """Bulk-insert the jobs, reports, figures and tags; returns what was written and how long it took."""
    templates = template_bodies()
    started = time.perf_counter()
    start_time = datetime(2026, 1, 1, tzinfo=UTC)
    jobs, reports, figures, tags = [], [], [], []
    for index in range(N_JOBS):
        kind = "distill" if rng.random() < DISTILL_SHARE else "ptq"
        job_id, report_id = f"job_{uuid.uuid4().hex[:20]}", f"rep_{uuid.uuid4().hex[:20]}"
        created_at = start_time + timedelta(seconds=30 * index)
        experiment = f"exp-{rng.randrange(N_EXPERIMENTS):02d}"
        body = drawn_body(templates[kind], job_id, rng)
        report = parse_report(body)
        jobs.append((job_id, kind, experiment, "{}", "succeeded", 1.0, "done", 1, False, "", created_at, created_at))
        reports.append(
            (
                report_id,
                job_id,
                kind,
                experiment,
                "2.0",
                body["passed"],
                json.dumps(body),
                created_at + timedelta(seconds=20),
            )
        )
        figures += [(report_id, name, kind, value) for name, value in numeric_figures(report).items()]
        tags += [("job", job_id, f"tag-{tag:02d}") for tag in rng.sample(range(N_TAGS), rng.randint(1, 3))]
    built = time.perf_counter()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        with connection.cursor() as cursor:
            copy_rows(
                cursor,
                "jobs",
                ("id", "kind", "experiment", "params", "status", "progress", "stage", "attempts", "cancel_requested",
                 "owner", "created_at", "finished_at"),
                jobs,
            )  # fmt: skip
            copy_rows(
                cursor,
                "reports",
                ("id", "job_id", "kind", "experiment", "schema_version", "passed", "body", "created_at"),
                reports,
            )
            copy_rows(cursor, "report_figures", ("report_id", "name", "kind", "value"), figures)
            copy_rows(cursor, "tags", ("resource_type", "resource_id", "tag"), tags)
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk load: statistics, visibility map
    return {
        "jobs": len(jobs),
        "reports": len(reports),
        "report_figures": len(figures),
        "tags": len(tags),
        "build_s": round(built - started, 2),
        "copy_and_analyze_s": round(time.perf_counter() - built, 2),
    }


class StatementLog:
    """The SQL statements (with parameters) the app sends while ``recording``, to EXPLAIN them afterwards."""

    def __init__(self, engine: sa.Engine) -> None:
        self.recording, self.statements = False, []
        sa.event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.recording and statement.lstrip().upper().startswith("SELECT"):
            self.statements.append((statement, parameters))


def explain(engine: sa.Engine, statement: str, parameters) -> list[str]:
    with engine.connect() as connection:
        cursor = connection.connection.cursor()
        cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {statement}", parameters)
        return [row[0] for row in cursor.fetchall()]


def measure(client: TestClient, log: StatementLog, engine: sa.Engine, path: str, params: list[tuple[str, str]]) -> dict:
    response = client.get(path, params=params)  # warm-up
    assert response.status_code == 200, response.text
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        response = client.get(path, params=params)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200
    log.recording, log.statements = True, []
    client.get(path, params=params)
    log.recording = False
    # The page query is the one with a LIMIT; the count and the tag/view look-ups are the others.
    page_statement = next(item for item in log.statements if "LIMIT" in item[0])
    count_statement = next(item for item in log.statements if "count(" in item[0].lower())
    summary = summarise_ms(samples)
    return {
        "request": f"GET {path}?" + "&".join(f"{k}={v}" for k, v in params),
        "total": response.json()["total"],
        "returned": len(response.json()["items"]),
        "queries_per_request": len(log.statements),
        **summary,
        "under_target": summary["p95_ms"] < TARGET_MS,
        "page_plan": explain(engine, *page_statement),
        "count_plan": explain(engine, *count_statement),
    }


def main() -> None:
    rng = random.Random(20261203)
    name = f"recomb_bench_listing_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    try:
        upgrade(url)
        filled = fill(url, rng)
        with tempfile.TemporaryDirectory() as root:
            settings = Settings(
                data_dir=Path(root), database_url=url, broker_url=None, api_keys="", artifact_store="db"
            )
            engine = get_engine(settings)
            log = StatementLog(engine)
            with TestClient(create_app(settings)) as client:
                sort = ("sort", f"-{AGREEMENT}")
                listings = {
                    "reports_sorted_by_figure": ("/reports", [("kind", "distill"), sort, ("limit", "50")]),
                    "reports_sorted_with_where": (
                        "/reports",
                        [("kind", "distill"), sort, ("where", f"{AGREEMENT}>=0.9"), ("limit", "50")],
                    ),
                    "reports_sorted_two_wheres": (
                        "/reports",
                        [
                            ("kind", "distill"),
                            sort,
                            ("where", f"{AGREEMENT}>=0.9"),
                            ("where", "best_epoch<=10"),
                            ("limit", "50"),
                        ],
                    ),  # fmt: skip
                    "reports_sorted_by_tag_and_experiment": (
                        "/reports",
                        [("kind", "distill"), sort, ("tag", "tag-07"), ("experiment", "exp-03"), ("limit", "50")],
                    ),
                    "reports_newest_first": ("/reports", [("kind", "distill"), ("limit", "50")]),
                    "jobs_by_tag": ("/jobs", [("tag", "tag-07"), ("limit", "50")]),
                    "jobs_by_two_tags": ("/jobs", [("tag", "tag-07"), ("tag", "tag-21"), ("limit", "50")]),
                    "jobs_by_experiment_and_passed": (
                        "/jobs",
                        [("experiment", "exp-03"), ("passed", "true"), ("limit", "50")],
                    ),
                }
                results = {key: measure(client, log, engine, path, params) for key, (path, params) in listings.items()}
            engine.dispose()
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    write_result(
        "report_listing",
        {
            "target_p95_ms": TARGET_MS,
            "repeats": REPEATS,
            "database": "PostgreSQL (fresh database, migrated to head, then COPY and VACUUM ANALYZE)",
            "filled": filled,
            "listings": results,
        },
    )


if __name__ == "__main__":
    main()
