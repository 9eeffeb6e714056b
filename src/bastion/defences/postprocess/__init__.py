"""Postprocessing defences: what a model's answers are reduced to before an adversary sees them."""
