"""Domain constraints on tabular inputs: what an adversary may change in a row, and how.

A constraints file (YAML or JSON) says, by feature name:

.. code-block:: yaml

    immutable: [account_age_days, card_age_days]   # never changed (a one-hot group's name too)
    one_hot:                                       # categorical groups: stay one-hot
      channel: [channel_pos, channel_web, channel_atm]
    features:
      hour: {step: 0.0434783}                      # on the grid min + k * step
      num_cards: {integer: true}                   # whole numbers
      amount: {min: 0.0, max: 0.8, epsilon: 0.05}  # a range, and its own epsilon
    columns: [amount, hour, ...]                   # optional: the column names, in order

Values and epsilons are in the data's own units: the units the model reads (for the built-in
``fraud`` set, features min-max scaled to [0, 1]). A feature's ``epsilon`` narrows the threat's
epsilon for that feature; it never widens it. Under Linf, a change the threat's epsilon does not
cover cannot happen: a binary or one-hot feature flips only under a norm whose epsilon reaches a
whole unit (L2 with epsilon >= 1, say).

:class:`Constraints` is the validated file; :meth:`Constraints.resolve` ties it to the columns of
the data and gives the per-feature arrays (:class:`FeatureConstraints`) that attacks and checks
work with.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bastion.core.errors import ConfigError, DataError
from bastion.core.threat import Norm

if TYPE_CHECKING:
    import torch

__all__ = ["Constraints", "FeatureConstraints", "FeatureRule"]

# how far off its grid (in units of the step) or outside its range a value may be and still
# count as on it: float32 arithmetic in the projection, never a real change
_TOL = 1e-4


class FeatureRule(BaseModel):
    """What may happen to one feature.

    Attributes:
        integer: whole numbers only.
        step: values on the grid ``min + k * step`` (the lower bound of the inputs when no
            ``min`` is given).
        min, max: the feature's range, within the inputs' bounds.
        epsilon: the most this feature may change, in the data's units (at most the threat's).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    integer: bool = False
    step: float | None = Field(default=None, gt=0)
    min: float | None = None
    max: float | None = None
    epsilon: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> FeatureRule:
        if self.integer and self.step is not None:
            raise ValueError("give integer or step, not both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        for name in ("min", "max", "step", "epsilon"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        return self


class Constraints(BaseModel):
    """A validated constraints file; see the module's documentation for the format."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: list[str] | None = None
    immutable: list[str] = Field(default_factory=list)
    one_hot: dict[str, list[str]] = Field(default_factory=dict)
    features: dict[str, FeatureRule] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Constraints:
        if self.columns is not None and len(set(self.columns)) != len(self.columns):
            twice = sorted({c for c in self.columns if self.columns.count(c) > 1})
            raise ValueError(f"columns repeat: {', '.join(twice)}")
        seen: dict[str, str] = {}
        for group, members in self.one_hot.items():
            if len(members) < 2:
                raise ValueError(f"one-hot group {group!r} needs at least 2 columns")
            for m in members:
                if m in seen:
                    raise ValueError(f"{m!r} is in one-hot groups {seen[m]!r} and {group!r}")
                seen[m] = group
        for name in self.features:
            if name in seen:
                raise ValueError(
                    f"{name!r} belongs to one-hot group {seen[name]!r}: a one-hot column takes "
                    "no rules of its own"
                )
        for name in self.immutable:
            if name in seen:
                raise ValueError(
                    f"{name!r} belongs to one-hot group {seen[name]!r}: list the group's name "
                    f"({seen[name]!r}) as immutable instead"
                )
        if len(set(self.immutable)) != len(self.immutable):
            raise ValueError("immutable lists a feature twice")
        return self

    # ------------------------------------------------------------------ loading
    @classmethod
    def parse(cls, data: Any, source: str = "constraints") -> Constraints:
        """Validated constraints from a mapping; one-line ConfigError otherwise."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping of constraints, got {_kind(data)}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"{source}: {where + ': ' if where else ''}{msg}") from None

    @classmethod
    def load(cls, path: str | Path) -> Constraints:
        """Constraints from a YAML or JSON file."""
        import yaml

        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"no constraints file at {path}")
        try:
            text = file.read_text("utf-8")
            data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the constraints file {path}: {exc}") from None
        except (ValueError, yaml.YAMLError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{path}: not valid YAML or JSON ({first})") from None
        return cls.parse(data if data is not None else {}, str(path))

    @classmethod
    def coerce(
        cls, value: Constraints | Mapping[str, Any] | str | Path | None
    ) -> Constraints | None:
        """Constraints from what a caller may give: themselves, a mapping, or a file's path."""
        if value is None or isinstance(value, Constraints):
            return value
        if isinstance(value, Mapping):
            return cls.parse(value)
        if isinstance(value, (str, Path)):
            return cls.load(value)
        raise ConfigError(f"constraints must be a mapping or a file's path, got {_kind(value)}")

    def with_columns(self, names: list[str] | tuple[str, ...]) -> Constraints:
        """These constraints naming the data's columns (kept if the file names its own)."""
        if self.columns is not None or not names:
            return self
        return self.model_copy(update={"columns": list(names)})

    # ------------------------------------------------------------------ resolving
    def resolve(self, n_features: int, bounds: tuple[float, float]) -> FeatureConstraints:
        """Per-feature arrays for inputs of ``n_features`` columns within ``bounds``."""
        import torch

        names = self.columns if self.columns is not None else [f"x{i}" for i in range(n_features)]
        if len(names) != n_features:
            raise ConfigError(
                f"the constraints name {len(names)} columns; the inputs have {n_features}"
            )
        index = {n: i for i, n in enumerate(names)}
        groups = {g: list(m) for g, m in self.one_hot.items()}
        mentioned = [*self.features, *(m for ms in groups.values() for m in ms)]
        mentioned += [n for n in self.immutable if n not in groups]
        unknown = sorted({n for n in mentioned if n not in index})
        if unknown:
            known = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
            hint = (
                " (the data names no columns: list them under 'columns:')"
                if self.columns is None
                else ""
            )
            raise ConfigError(
                f"the constraints name unknown feature(s) {', '.join(map(repr, unknown))}; "
                f"the columns are: {known}{hint}"
            )
        lo_b, hi_b = float(bounds[0]), float(bounds[1])
        low = torch.full((n_features,), lo_b, dtype=torch.float64)
        high = torch.full((n_features,), hi_b, dtype=torch.float64)
        eps = torch.full((n_features,), math.inf, dtype=torch.float64)
        step = torch.zeros(n_features, dtype=torch.float64)
        origin = torch.zeros(n_features, dtype=torch.float64)
        mutable = torch.ones(n_features, dtype=torch.bool)
        for name, rule in self.features.items():
            i = index[name]
            for which, value in (("min", rule.min), ("max", rule.max)):
                if value is not None and not lo_b <= value <= hi_b:
                    raise ConfigError(
                        f"feature {name!r}: {which} {value:g} lies outside the input bounds "
                        f"[{lo_b:g}, {hi_b:g}]"
                    )
            low[i] = rule.min if rule.min is not None else lo_b
            high[i] = rule.max if rule.max is not None else hi_b
            if rule.epsilon is not None:
                eps[i] = rule.epsilon
            if rule.integer or rule.step is not None:
                step[i] = 1.0 if rule.integer else float(rule.step or 0.0)
                origin[i] = 0.0 if rule.integer else float(low[i])
                first = (
                    origin[i] + math.ceil(float((low[i] - origin[i]) / step[i]) - _TOL) * step[i]
                )
                if first > high[i] + _TOL * step[i]:
                    raise ConfigError(
                        f"feature {name!r}: no value on its grid lies in [{float(low[i]):g}, "
                        f"{float(high[i]):g}]"
                    )
        resolved_groups = []
        for group, members in groups.items():
            if not lo_b <= 0.0 < 1.0 <= hi_b:
                raise ConfigError(
                    f"one-hot group {group!r}: its columns take 0 and 1, outside the input bounds "
                    f"[{lo_b:g}, {hi_b:g}]"
                )
            cols = tuple(index[m] for m in members)
            low[list(cols)], high[list(cols)] = 0.0, 1.0
            resolved_groups.append(cols)
            if group in self.immutable:
                mutable[list(cols)] = False
        for name in self.immutable:
            if name not in groups:
                mutable[index[name]] = False
        return FeatureConstraints(
            names=list(names),
            mutable=mutable,
            low=low,
            high=high,
            epsilon=eps,
            step=step,
            origin=origin,
            groups=tuple(resolved_groups),
        )


def _kind(value: Any) -> str:
    return type(value).__name__


@dataclass(frozen=True)
class FeatureConstraints:
    """Constraints resolved to the columns of the data: one entry per feature (float64, CPU).

    ``epsilon`` is infinite where a feature has none of its own; ``step`` is 0 for a continuous
    feature; ``groups`` are the column indices of each one-hot group.
    """

    names: list[str]
    mutable: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    epsilon: torch.Tensor
    step: torch.Tensor
    origin: torch.Tensor
    groups: tuple[tuple[int, ...], ...]

    @property
    def discrete(self) -> bool:
        """Whether any feature is stepped, whole or one-hot (and so needs rounding)."""
        return bool((self.step > 0).any()) or bool(self.groups)

    def _like(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return t.to(device=x.device, dtype=x.dtype)

    def box(self, x: torch.Tensor, norm: Norm, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per input and feature, the interval a feature may take: its range, within its own
        epsilon and (Linf) the threat's, pinned to the input where it is immutable. ``x`` is
        (N, D)."""
        import torch

        reach = self._like(self.epsilon, x).clamp(max=eps if norm is Norm.LINF else math.inf)
        lo = torch.maximum(self._like(self.low, x), x - reach)
        hi = torch.minimum(self._like(self.high, x), x + reach)
        fixed = self.mutable.to(x.device).logical_not()
        lo = torch.where(fixed, x, lo)
        hi = torch.where(fixed, x, hi)
        # an input already outside a range (refused by check_data) keeps its value
        return torch.minimum(lo, x), torch.maximum(hi, x)

    def snap(self, z: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """``z`` with stepped and whole features on their grid, inside ``[lo, hi]`` (nearest
        grid point; ``[lo, hi]`` holds the clean input, which is on its grid)."""
        import torch

        step = self._like(self.step, z)
        on = step > 0
        if not bool(on.any()):
            return z
        safe = torch.where(on, step, torch.ones_like(step))
        origin = self._like(self.origin, z)
        k = torch.round((z - origin) / safe)
        k_lo = torch.ceil((lo - origin) / safe - _TOL)
        k_hi = torch.floor((hi - origin) / safe + _TOL)
        k = torch.maximum(torch.minimum(k, k_hi), k_lo)
        return torch.where(on, origin + k * safe, z)

    # ------------------------------------------------------------------ checking
    def check_data(self, x: torch.Tensor, what: str = "the inputs") -> None:
        """Refuse clean inputs that break the constraints themselves (DataError)."""
        rows = x.reshape(len(x), -1).double().cpu()
        if rows.shape[1] != len(self.names):
            raise DataError(
                f"{what} have {rows.shape[1]} features; the constraints {len(self.names)}"
            )
        bad = self._broken(rows)
        if bad:
            kind, count, feature = bad[0]
            raise DataError(
                f"{count} of {len(rows)} of {what} break the constraints themselves ({kind}, "
                f"feature {feature!r}): fix the constraints or the data"
            )

    def _broken(self, rows: torch.Tensor) -> list[tuple[str, int, str]]:
        import torch

        out = []
        scale = max(1.0, float((self.high - self.low).abs().max()))
        tol = 1e-5 * scale
        outside = (rows < self.low - tol) | (rows > self.high + tol)
        on = self.step > 0
        safe = torch.where(on, self.step, torch.ones_like(self.step))
        k = (rows - self.origin) / safe
        off = on & ((k - torch.round(k)).abs() > _TOL)
        for kind, mask in (("outside its range", outside), ("off its grid", off)):
            per_feature = mask.sum(dim=0)
            if bool(per_feature.any()):
                i = int(per_feature.argmax())
                out.append((kind, int(mask.any(dim=1).sum()), self.names[i]))
        for cols in self.groups:
            part = rows[:, list(cols)]
            binary = ((part - 0).abs() <= tol) | ((part - 1).abs() <= tol)
            ones = (part > 0.5).sum(dim=1)
            broken = ~binary.all(dim=1) | (ones != 1)
            if bool(broken.any()):
                out.append(("not one-hot", int(broken.sum()), self.names[cols[0]]))
        return out

    def violations(
        self, x_adv: torch.Tensor, x: torch.Tensor, norm: Norm | None = None, eps: float = math.inf
    ) -> dict[str, int]:
        """How many adversarial inputs break each kind of constraint (every count 0 when all
        hold): a changed immutable feature, a value outside its range or off its grid, a
        one-hot group that is not one-hot, a change beyond a feature's epsilon, and (given a
        norm) a perturbation beyond the threat's epsilon. Checked to float32 precision."""
        import torch

        adv = x_adv.reshape(len(x_adv), -1).double().cpu()
        clean = x.reshape(len(x), -1).double().cpu()
        delta = adv - clean
        scale = max(1.0, float((self.high - self.low).abs().max()))
        tol = 1e-5 * scale
        counts = {
            "immutable": int(((delta.abs() > tol) & ~self.mutable).any(dim=1).sum()),
            "range": int(((adv < self.low - tol) | (adv > self.high + tol)).any(dim=1).sum()),
            "grid": 0,
            "one_hot": 0,
            "feature_epsilon": int((delta.abs() > self.epsilon + tol).any(dim=1).sum()),
        }
        on = self.step > 0
        if bool(on.any()):
            safe = torch.where(on, self.step, torch.ones_like(self.step))
            k = (adv - self.origin) / safe
            counts["grid"] = int((on & ((k - torch.round(k)).abs() > _TOL)).any(dim=1).sum())
        broken = torch.zeros(len(adv), dtype=torch.bool)
        for cols in self.groups:
            part = adv[:, list(cols)]
            binary = ((part.abs() <= tol) | ((part - 1).abs() <= tol)).all(dim=1)
            broken |= ~binary | ((part > 0.5).sum(dim=1) != 1)
        counts["one_hot"] = int(broken.sum())
        if norm is not None and math.isfinite(eps):
            if norm is Norm.LINF:
                size = delta.abs().amax(dim=1) if delta.shape[1] else delta.new_zeros(len(delta))
            elif norm is Norm.L2:
                size = delta.norm(dim=1)
            else:
                size = (delta.abs() > tol).sum(dim=1).double()
            counts["norm"] = int((size > eps * (1 + 1e-5) + tol).sum())
        return counts

    def describe(self) -> dict[str, Any]:
        """What the constraints say, by feature name, for reports."""
        steps = {
            self.names[i]: (
                "integer"
                if float(self.origin[i]) == 0 and float(self.step[i]) == 1
                else f"step {float(self.step[i]):g}"
            )
            for i in range(len(self.names))
            if float(self.step[i]) > 0
        }
        return {
            "immutable": [
                n for n, m in zip(self.names, self.mutable.tolist(), strict=True) if not m
            ],
            "one_hot": [[self.names[i] for i in cols] for cols in self.groups],
            "discrete": steps,
            "feature_epsilon": {
                n: float(e)
                for n, e in zip(self.names, self.epsilon.tolist(), strict=True)
                if math.isfinite(e)
            },
        }
