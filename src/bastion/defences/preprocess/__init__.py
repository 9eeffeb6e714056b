"""Preprocessing defences: transforms applied to inputs inside a target."""
