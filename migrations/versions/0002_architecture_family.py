"""Architecture family: checkpoints record their source format; stored architectures use the family's fields; state buffers may carry recorded actions.

Rows written before the family existed hold ``{input_dim, hidden_size,
output_dim, dropout_rate}``: they become ``{input_dim, hidden_sizes: [h, h],
output_dim, norm: "layernorm", activation: "relu", dropout_rate}``, the
reference layout they always were. Artifacts are untouched (their headers
read either way), so sha256 values and files stay as they are. Reports are
JSON documents kept as written.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

checkpoints = sa.table("checkpoints", sa.column("id", sa.String), sa.column("arch", sa.JSON))


def upgrade() -> None:
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_format", sa.String(length=16), nullable=False, server_default="recomb"))
    with op.batch_alter_table("state_buffers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actions_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("actions_max", sa.Integer(), nullable=True))
    connection = op.get_bind()
    for row_id, arch in connection.execute(sa.select(checkpoints.c.id, checkpoints.c.arch)).all():
        if isinstance(arch, dict) and "hidden_size" in arch:
            width = arch["hidden_size"]
            upgraded = {
                "input_dim": arch["input_dim"],
                "hidden_sizes": [width, width],
                "output_dim": arch["output_dim"],
                "norm": "layernorm",
                "activation": "relu",
                "dropout_rate": arch.get("dropout_rate", 0.1),
            }
            connection.execute(sa.update(checkpoints).where(checkpoints.c.id == row_id).values(arch=upgraded))


def downgrade() -> None:
    """Reference-layout rows go back to ``hidden_size``; other layouts cannot be described by the old schema and keep their fields."""
    connection = op.get_bind()
    for row_id, arch in connection.execute(sa.select(checkpoints.c.id, checkpoints.c.arch)).all():
        widths = arch.get("hidden_sizes") if isinstance(arch, dict) else None
        if (
            widths
            and len(widths) == 2
            and widths[0] == widths[1]
            and arch.get("norm") == "layernorm"
            and arch.get("activation") == "relu"
        ):
            old = {
                "input_dim": arch["input_dim"],
                "hidden_size": widths[0],
                "output_dim": arch["output_dim"],
                "dropout_rate": arch["dropout_rate"],
            }
            connection.execute(sa.update(checkpoints).where(checkpoints.c.id == row_id).values(arch=old))
    with op.batch_alter_table("state_buffers", schema=None) as batch_op:
        batch_op.drop_column("actions_max")
        batch_op.drop_column("actions_sha256")
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.drop_column("source_format")
