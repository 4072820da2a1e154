"""Reports stored before migration 0005 get their ``report_figures`` rows, so lists sort and filter them by figure.

The database is built by the migrations up to 0004 and filled with the real 2.0 reports of every job kind (the
1.0 fixture ``tests/data/reports_v1.json`` stored at 0003 and rewritten by 0004), then upgraded to head and read
through the API, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from app.contracts.report_models import numeric_figures, parse_report
from migrations import migrate, upgrade
from tests.api.conftest import client_for, make_settings
from tests.test_migrations import HEAD, empty_database  # noqa: F401  (the fixture: SQLite and PostgreSQL)
from tests.test_report_migration import V1_REPORTS, store_v1_reports

AGREEMENT = "held_out.action_agreement"


def stored_figures(url: str) -> dict[tuple[str, str], tuple[str, float]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT report_id, name, kind, value FROM report_figures")).all()
    finally:
        engine.dispose()
    return {(report_id, name): (kind, value) for report_id, name, kind, value in rows}


def bodies(url: str) -> dict[str, dict]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT id, body FROM reports")).all()
    finally:
        engine.dispose()
    return {report_id: body if isinstance(body, dict) else json.loads(body) for report_id, body in rows}


def test_reports_stored_before_get_their_figures_and_list_by_them(tmp_path, empty_database):  # noqa: F811
    url = empty_database
    upgrade(url, "0003")
    store_v1_reports(url)
    upgrade(url, "0004")
    before = bodies(url)
    assert migrate(url) == ("0004", HEAD)
    expected = {
        (report_id, name): (body["kind"], value)
        for report_id, body in before.items()
        for name, value in numeric_figures(parse_report(body)).items()
    }
    assert len(expected) > 50
    assert stored_figures(url) == expected
    settings = make_settings(tmp_path, database_url=url)
    with client_for(settings) as client:
        for kind in ("distill", "ptq", "validate-distillation"):
            own = [row["id"] for row in V1_REPORTS if row["kind"] == kind]
            listed = client.get("/reports", params={"kind": kind, "sort": f"-{AGREEMENT}"})
            assert listed.status_code == 200, listed.text
            assert [item["id"] for item in listed.json()["items"]] == own
            assert listed.json()["items"][0]["experiment"] == "default"
            value = expected[(own[0], AGREEMENT)][1]
            kept = client.get("/reports", params={"kind": kind, "where": f"{AGREEMENT}>={value}"}).json()
            dropped = client.get("/reports", params={"kind": kind, "where": f"{AGREEMENT}>{value}"}).json()
            assert (kept["total"], dropped["total"]) == (1, 0)
    assert migrate(url, "0004") == (HEAD, "0004")
    assert bodies(url) == before
