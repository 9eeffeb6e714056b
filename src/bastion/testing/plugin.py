"""bastion's pytest plugin, loaded by pytest through the ``pytest11`` entry point.

- the ``robustness`` marker, registered so that ``--strict-markers`` accepts it: mark the
  slow robustness tests and select them with ``-m robustness`` (or leave them out with
  ``-m "not robustness"``);
- the ``robustness`` fixture: :func:`bastion.testing.robustness`, for a test that prefers a
  fixture to an import;
- failure messages: a failed comparison with a robustness figure says the figure, its 95%
  interval, its count and its setting, and whether the threshold lies within the interval.

It loads in every pytest run of anyone who installs bastion, so it imports nothing heavy:
torch and numpy wait until a test measures something. Turn it off with ``-p no:bastion``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from bastion.testing._result import RobustnessResult

MARKER = (
    "robustness: a test that measures a model's robustness with bastion (attacks: slow); "
    "select with -m robustness, leave out with -m 'not robustness'"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)


@pytest.fixture
def robustness() -> Callable[..., RobustnessResult]:
    """:func:`bastion.testing.robustness`: ``robustness(model, data, eps=0.1, ...)`` measures
    the robust accuracy to assert on."""
    from bastion.testing._measure import robustness as measure

    return measure


def pytest_assertrepr_compare(op: str, left: Any, right: Any) -> list[str] | None:
    from bastion.testing._result import explain_comparison

    return explain_comparison(op, left, right)
