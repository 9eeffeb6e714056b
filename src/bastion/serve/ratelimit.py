"""Per-key rate limits (requests per window) and query budgets (inputs per window).

Both are counters of the ``limits`` library: in memory for one gateway process, in Redis for
several replicas that must share one key's allowance. A request the rate limit refuses, or a
batch that would pass the budget, is refused whole, with the seconds until the window lets it
through (for ``Retry-After``); a refused batch spends nothing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from bastion._extras import require
from bastion.core.errors import ConfigError
from bastion.serve.policy import LimitPolicy

require("limits")

from limits import RateLimitItem, parse  # noqa: E402
from limits.storage import Storage, storage_from_string  # noqa: E402
from limits.strategies import (  # noqa: E402
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

__all__ = ["Limiter", "Refused"]

_STRATEGIES: dict[str, type[RateLimiter]] = {
    "moving-window": MovingWindowRateLimiter,
    "fixed-window": FixedWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
}


@dataclass(frozen=True)
class Refused:
    """Why a request is refused, and when to come back."""

    what: str  # "rate" or "budget"
    retry_after: int  # whole seconds, at least 1
    limit: str


class Limiter:
    """The rate limit and the budget of a policy, per key.

    Args:
        policy: the policy's ``limits`` section.
        namespace: prefixes every counter, so gateways of different models sharing one Redis
            keep separate allowances (replicas of the same model share theirs).
    """

    def __init__(self, policy: LimitPolicy, *, namespace: str = "bastion") -> None:
        self.policy = policy
        self.namespace = namespace
        try:
            storage = storage_from_string(policy.storage)
        except Exception as exc:  # the library raises its own errors for bad URLs
            raise ConfigError(f"limits storage {policy.storage.split('@')[-1]!r}: {exc}") from None
        if not isinstance(storage, Storage):
            raise ConfigError(f"limits storage {policy.storage!r} is not a synchronous storage")
        self.storage: Storage = storage
        self._strategy = _STRATEGIES[policy.strategy](self.storage)
        self.rate: RateLimitItem | None = parse(policy.rate) if policy.rate else None
        self.budget: RateLimitItem | None = parse(policy.budget) if policy.budget else None

    def check_rate(self, key_id: str, *, scale: int = 1) -> Refused | None:
        """Count one request of ``key_id``; a :class:`Refused` if it is over the rate.

        ``scale`` divides the allowance (a quarantined key gets ``1/scale`` of it).
        """
        item = self._scaled(self.rate, scale)
        if item is None:
            return None
        if self._strategy.hit(item, self.namespace, "rate", key_id):
            return None
        return Refused("rate", self._retry_after(item, "rate", key_id), str(item))

    def check_trickle(self, key_id: str, rate: str) -> Refused | None:
        """Count one request of a quarantined ``key_id`` against the trickle ``rate``."""
        item = parse(rate)
        if self._strategy.hit(item, self.namespace, "quarantine", key_id):
            return None
        return Refused("quarantine", self._retry_after(item, "quarantine", key_id), str(item))

    def charge(self, key_id: str, n: int) -> Refused | None:
        """Spend ``n`` of ``key_id``'s budget; a :class:`Refused` (spending nothing) if short."""
        if self.budget is None or n == 0:
            return None
        if n > self.budget.amount:
            return Refused(
                "budget", self._retry_after(self.budget, "budget", key_id), str(self.budget)
            )
        if self._strategy.hit(self.budget, self.namespace, "budget", key_id, cost=n):
            return None
        return Refused("budget", self._retry_after(self.budget, "budget", key_id), str(self.budget))

    def remaining(self, key_id: str) -> int | None:
        """Inputs ``key_id`` may still send in the budget's current window."""
        if self.budget is None:
            return None
        stats = self._strategy.get_window_stats(self.budget, self.namespace, "budget", key_id)
        return int(stats.remaining)

    def ping(self) -> bool:
        try:
            return bool(self.storage.check())
        except Exception:
            return False

    def _retry_after(self, item: RateLimitItem, *ids: str) -> int:
        stats = self._strategy.get_window_stats(item, self.namespace, *ids)
        return max(1, math.ceil(stats.reset_time - time.time()))

    @staticmethod
    def _scaled(item: RateLimitItem | None, scale: int) -> RateLimitItem | None:
        if item is None or scale <= 1:
            return item
        amount = max(1, item.amount // scale)
        return type(item)(amount, item.multiples, item.namespace)
