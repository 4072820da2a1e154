"""Writes ``reports_v1.json``: one real report of every job kind, as the 1.0 report schema stored them.

It was run once on the tree of commit 8a1d9eb (the last with 1.0 reports):
``git archive 8a1d9eb | tar -x -C /tmp/v1 && cp tests/real_reports.py /tmp/v1/tests/ &&
cd /tmp/v1 && PYTHONPATH=. python tests/data/make_reports_v1.py OUT``. On a later tree it writes
that tree's schema instead.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from migrations import upgrade
from tests.real_reports import every_kind


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as root:
        settings = Settings(data_dir=Path(root), database_url=None, broker_url=None, api_keys="", artifact_store="db")
        upgrade(settings.resolved_database_url)
        with TestClient(create_app(settings)) as client:
            reports = every_kind(client, settings)
    rows = [
        {key: report[key] for key in ("id", "job_id", "kind", "schema_version", "passed", "created_at", "body")}
        for _, report in sorted(reports.items())
    ]
    out.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
