"""Robustness as a test: measure a model's robust accuracy inside a team's own test suite.

.. code-block:: python

    from bastion.testing import robustness

    def test_model_is_robust_enough():
        r = robustness("digits-cnn", eps=0.05, attacks=["fgsm"], samples=100)
        assert r.robust_accuracy >= 0.5

A failing assertion shows the figure with its 95% interval, its count and its setting. With
bastion installed, pytest loads :mod:`bastion.testing.plugin` by itself: it registers the
``robustness`` marker (select these tests with ``-m robustness``, leave them out with
``-m "not robustness"``), offers :func:`robustness` as a fixture, and words the failures.

This package imports neither torch nor numpy until a figure is measured.
"""

from bastion.testing._measure import robustness
from bastion.testing._result import Figure, RobustnessResult

__all__ = ["Figure", "RobustnessResult", "robustness"]
