"""Alembic migrations of the campaign store, applied when a store is opened."""
