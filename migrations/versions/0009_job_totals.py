"""Job totals: running counts and duration histograms of finished jobs, by kind and final status, for /metrics.

Back-filled from the jobs already stored (durations as /metrics computed them
until now: started_at to finished_at of the last run, clamped at 0), so the
counters continue where the old scrape left them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.service.job_totals import backfill

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "cancelled")
BUCKET_COLUMNS = (
    "le_0_05",
    "le_0_1",
    "le_0_25",
    "le_0_5",
    "le_1",
    "le_2_5",
    "le_5",
    "le_10",
    "le_30",
    "le_60",
    "le_120",
    "le_300",
    "le_600",
    "le_1800",
    "le_3600",
)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "job_totals",
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column(
            "status",
            # The jobs table's enum type, which exists already on PostgreSQL (older SQLAlchemy releases
            # ignore create_type on sa.Enum, so it is said on the dialect's type).
            sa.Enum(*JOB_STATUSES, name="jobstatus").with_variant(
                postgresql.ENUM(*JOB_STATUSES, name="jobstatus", create_type=False), "postgresql"
            ),
            nullable=False,
        ),
        sa.Column("ended", sa.Integer(), nullable=False),
        sa.Column("ran", sa.Integer(), nullable=False),
        sa.Column("run_seconds", sa.Float(), nullable=False),
        *(sa.Column(column, sa.Integer(), nullable=False) for column in BUCKET_COLUMNS),
        sa.PrimaryKeyConstraint("kind", "status"),
    )
    backfill(op.get_bind())


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("job_totals")
