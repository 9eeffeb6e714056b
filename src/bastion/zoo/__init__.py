"""Demo models that bastion trains itself, in seconds, on the CPU."""

from bastion.zoo.models import MLP, ZOO, Recipe, SmallCNN, cache_dir, load_demo, train_classifier

__all__ = ["MLP", "ZOO", "Recipe", "SmallCNN", "cache_dir", "load_demo", "train_classifier"]
