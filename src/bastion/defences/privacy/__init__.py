"""Training that limits what a model remembers of its data."""
