"""The first schema: runs, their cells, and results keyed by content.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign", sa.String(64), nullable=False, index=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("created", sa.String(32), nullable=False),
        sa.Column("finished", sa.String(32)),
        sa.Column("engine", sa.String(32)),
        sa.Column("version", sa.String(32), nullable=False),
    )
    op.create_table(
        "cells",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("assessment", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("setting", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("key", sa.String(64), nullable=False, index=True),
        sa.Column("tasks", sa.Integer, nullable=False),
        sa.Column("estimate", sa.Float),
    )
    op.create_table(
        "results",
        sa.Column("key", sa.String(96), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("payload", sa.Text),
        sa.Column("seconds", sa.Float),
        sa.Column("worker", sa.String(128)),
        sa.Column("updated", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("results")
    op.drop_table("cells")
    op.drop_table("runs")
