"""Reports stored as schema 1.0 are rewritten to 2.0 by ``recomb migrate``, read through the API, and downgraded back.

The database is built by the migrations up to 0003 and filled with real 1.0
reports of every job kind (``tests/data/reports_v1.json``, written by real
jobs on the code of that time), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from app.contracts.job_kinds import JOB_KINDS
from app.contracts.report_models import parse_report
from migrations import current_revision, migrate, upgrade
from tests.api.conftest import client_for, make_settings
from tests.test_migrations import HEAD, empty_database  # noqa: F401  (the fixture: SQLite and PostgreSQL)

REPORT_MODELS = {kind: job_kind.report_model for kind, job_kind in JOB_KINDS.items()}
V1_REPORTS = json.loads((Path(__file__).parent / "data" / "reports_v1.json").read_text())


def store_v1_reports(url: str) -> None:
    """The reports and their jobs' rows, as the 1.0 code stored them."""
    engine = sa.create_engine(url)
    tables = sa.MetaData()
    tables.reflect(engine)
    with engine.begin() as connection:
        for row in V1_REPORTS:
            created_at = datetime.fromisoformat(row["created_at"])
            connection.execute(
                tables.tables["jobs"].insert().values(
                    id=row["job_id"], kind=row["kind"], params={}, status="succeeded", progress=1.0, stage="done",
                    attempts=1, cancel_requested=False, owner="", created_at=created_at,
                )
            )  # fmt: skip
            connection.execute(tables.tables["reports"].insert().values(**(row | {"created_at": created_at})))
    engine.dispose()


def stored_reports(url: str) -> dict[str, tuple[str, dict]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT id, schema_version, body FROM reports")).all()
    finally:
        engine.dispose()
    return {
        report_id: (version, body if isinstance(body, dict) else json.loads(body)) for report_id, version, body in rows
    }


def test_1_0_reports_read_as_2_0_after_migrate_and_come_back_on_downgrade(tmp_path, empty_database):  # noqa: F811
    url = empty_database
    upgrade(url, "0003")
    store_v1_reports(url)
    settings = make_settings(tmp_path, database_url=url)
    with client_for(settings) as client:  # migrates to head first
        assert current_revision(url) == HEAD
        kinds = set()
        for row in V1_REPORTS:
            response = client.get(f"/reports/{row['id']}")
            assert response.status_code == 200, response.text
            report = response.json()
            body = report["body"]
            assert report["schema_version"] == body["schema_version"] == "2.0" and report["passed"] == row["passed"]
            assert type(parse_report({k: v for k, v in body.items() if k != "figures"})) is REPORT_MODELS[row["kind"]]
            assert body["figures"], row["kind"]
            kinds.add(body["kind"])
        assert kinds == set(REPORT_MODELS)
        distill = client.get(f"/reports/{next(r['id'] for r in V1_REPORTS if r['kind'] == 'distill')}").json()["body"]
        v1_distill = next(r["body"] for r in V1_REPORTS if r["kind"] == "distill")
        assert distill["curves"] == v1_distill["curves"] and distill["held_out"] == v1_distill["held_out"]
        qat = next(r for r in V1_REPORTS if r["kind"] == "qat")
        assert client.get(f"/reports/{qat['id']}").json()["body"]["curves"] == qat["body"]["history"]
        ptq = next(r for r in V1_REPORTS if r["kind"] == "ptq")
        ptq_body = client.get(f"/reports/{ptq['id']}").json()["body"]
        assert ptq_body["checks"] == ptq["body"]["validation"]["checks"]
        assert ptq_body["held_out"] == ptq["body"]["validation"]["fidelity"]
    assert migrate(url, "0003") == (HEAD, "0003")
    assert stored_reports(url) == {row["id"]: ("1.0", row["body"]) for row in V1_REPORTS}
