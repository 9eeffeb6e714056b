"""Alembic migrations of the campaign store (applied by :meth:`bastion.campaign.store.Store.open`)."""
