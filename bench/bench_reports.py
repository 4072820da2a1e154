"""What typed reports cost; writes bench/results/reports.json.

Run: ``.venv/bin/python bench/bench_reports.py``. Over the real 1.0 reports of
every job kind in ``tests/data/reports_v1.json``, upgraded to 2.0:

- ``store``: what a worker adds per job (``parse_report`` then ``stored_body``);
- ``serve``: what ``GET /reports/{id}`` adds (``parse_report`` then a JSON dump with ``figures``);
- ``migration``: migration 0004 on a SQLite database holding ``N_MIGRATED``
  such reports (the fixture's, repeated under new ids), upgrade and downgrade.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.contracts.report_models import parse_report, stored_body  # noqa: E402
from bench.common import summarise_ms, write_result  # noqa: E402
from migrations import migrate, upgrade  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
V1_REPORTS = json.loads((ROOT / "tests" / "data" / "reports_v1.json").read_text())
REPEATS = 200
N_MIGRATED = 2800


def migration_module():
    spec = importlib.util.spec_from_file_location(
        "report_schema_2", ROOT / "migrations/versions/0004_report_schema_2.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(action, repeats: int = REPEATS) -> dict:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return summarise_ms(samples)


def per_kind() -> dict:
    migration = migration_module()
    results = {}
    for row in V1_REPORTS:
        body = migration.upgrade_body(row["kind"], row["body"])
        results[row["kind"]] = {
            "body_bytes": len(json.dumps(body)),
            "store": timed(lambda body=body: stored_body(parse_report(body))),
            "serve": timed(lambda body=body: parse_report(body).model_dump_json()),
        }
    return results


def migration_run() -> dict:
    with tempfile.TemporaryDirectory() as root:
        url = f"sqlite:///{root}/reports.db"
        upgrade(url, "0003")
        engine = sa.create_engine(url)
        tables = sa.MetaData()
        tables.reflect(engine)
        with engine.begin() as connection:
            for index in range(N_MIGRATED):
                row = V1_REPORTS[index % len(V1_REPORTS)]
                job_id, created_at = f"job_{index:020d}", datetime.fromisoformat(row["created_at"])
                connection.execute(
                    tables.tables["jobs"].insert().values(
                        id=job_id, kind=row["kind"], params={}, status="succeeded", progress=1.0, stage="done",
                        attempts=1, cancel_requested=False, owner="", created_at=created_at,
                    )
                )  # fmt: skip
                connection.execute(
                    tables.tables["reports"]
                    .insert()
                    .values(**(row | {"id": f"rep_{index:020d}", "job_id": job_id, "created_at": created_at}))
                )
        engine.dispose()
        started = time.perf_counter()
        migrate(url, "0004")
        upgraded_s = time.perf_counter() - started
        started = time.perf_counter()
        migrate(url, "0003")
        downgraded_s = time.perf_counter() - started
    return {
        "reports": N_MIGRATED,
        "upgrade_s": upgraded_s,
        "downgrade_s": downgraded_s,
        "upgrade_reports_per_s": N_MIGRATED / upgraded_s,
    }


def main() -> None:
    write_result("reports", {"per_kind": per_kind(), "migration": migration_run()})


if __name__ == "__main__":
    main()
