"""Idempotency keys scoped to caller and route, in a table of their own; jobs record their owner and worker.

The old per-table ``idempotency_key`` columns were global (any caller, any
route, forever) and held no hash of the request, so they cannot be carried
into scoped records: keys issued before this revision are forgotten, and a
retry across the upgrade creates its resource anew.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES_WITH_KEYS = ("jobs", "checkpoints", "state_buffers")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "idempotency_keys",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("route", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", "route", "key"),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=64), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=120), nullable=True))
    for table in TABLES_WITH_KEYS:
        # The column's unnamed unique constraint goes with it (PostgreSQL drops it; SQLite's batch copy omits it).
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("idempotency_key")


def downgrade() -> None:
    """Downgrade schema."""
    for table in TABLES_WITH_KEYS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
            batch_op.create_unique_constraint(f"uq_{table}_idempotency_key", ["idempotency_key"])
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
        batch_op.drop_column("owner")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_created_at"))
    op.drop_table("idempotency_keys")
