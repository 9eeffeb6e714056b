"""Alembic's environment for the campaign store: migrations run on the connection the store
hands over (``config.attributes["connection"]``), never on a URL read from a file."""

from __future__ import annotations

from alembic import context

from bastion.campaign.store import METADATA

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=METADATA, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
