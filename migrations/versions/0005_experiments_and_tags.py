"""Experiments, tags and job names; report figures in an indexed table for sorting and filtering.

- ``jobs.name``; ``experiment`` (default ``"default"``, indexed) on jobs, checkpoints and reports;
- ``tags(resource_type, resource_id, tag)`` with an index on ``(resource_type, tag)``;
- ``report_figures(report_id, name, kind, value)`` with an index on ``(kind, name, value, report_id)``,
  filled here for the reports already stored;
- reports' index on ``kind`` becomes ``(kind, created_at, id)``, which serves a kind's list and its count
  without reading report bodies.

The back-fill reads each body with the report models (``app.contracts.report_models``), the same
definition of a figure that writes the rows of new reports. Downgrade drops what upgrade made.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.contracts.report_models import numeric_figures, parse_report

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXPERIMENT_TABLES = ("jobs", "checkpoints", "reports")
BACKFILL_BATCH = 1000


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=True))
    for table in EXPERIMENT_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("experiment", sa.String(length=100), nullable=False, server_default="default")
            )
            batch_op.create_index(batch_op.f(f"ix_{table}_experiment"), ["experiment"], unique=False)
    op.create_table(
        "tags",
        sa.Column("resource_type", sa.String(length=16), nullable=False),
        sa.Column("resource_id", sa.String(length=40), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("resource_type", "resource_id", "tag"),
    )
    op.create_index("ix_tags_resource_type_tag", "tags", ["resource_type", "tag"], unique=False)
    figures = op.create_table(
        "report_figures",
        sa.Column("report_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["reports.id"]),
        sa.PrimaryKeyConstraint("report_id", "name"),
    )
    _backfill_figures(figures)
    op.create_index(
        "ix_report_figures_kind_name_value", "report_figures", ["kind", "name", "value", "report_id"], unique=False
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index("ix_reports_kind")
        batch_op.create_index("ix_reports_kind_created_at_id", ["kind", "created_at", "id"], unique=False)


def _backfill_figures(figures: sa.Table) -> None:
    """One row per numeric figure of every stored report, read in batches by id (the index is built after)."""
    connection = op.get_bind()
    reports = sa.table("reports", sa.column("id", sa.String), sa.column("body", sa.JSON))
    last_id = ""
    while True:
        batch = connection.execute(
            sa.select(reports.c.id, reports.c.body)
            .where(reports.c.id > last_id)
            .order_by(reports.c.id)
            .limit(BACKFILL_BATCH)
        ).all()
        if not batch:
            return
        rows = []
        for report_id, body in batch:
            report = parse_report({key: value for key, value in body.items() if key != "figures"})
            rows += [
                {"report_id": report_id, "name": name, "kind": report.kind, "value": value}
                for name, value in numeric_figures(report).items()
            ]
        if rows:
            connection.execute(figures.insert(), rows)
        last_id = batch[-1][0]


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index("ix_reports_kind_created_at_id")
        batch_op.create_index("ix_reports_kind", ["kind"], unique=False)
    op.drop_index("ix_report_figures_kind_name_value", table_name="report_figures")
    op.drop_table("report_figures")
    op.drop_index("ix_tags_resource_type_tag", table_name="tags")
    op.drop_table("tags")
    for table in EXPERIMENT_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_experiment"))
            batch_op.drop_column("experiment")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("name")
