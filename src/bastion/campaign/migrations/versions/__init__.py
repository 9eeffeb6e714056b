"""The store's schema versions, oldest first."""
