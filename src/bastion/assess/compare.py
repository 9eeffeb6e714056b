"""Two sets of assessments side by side: what changed, which way, and whether it is noise.

The comparison reads assessments in their JSON form (the ``assessments`` of a schema 2.0
``report.json``), so a report written months ago compares with one written now. It pairs the
assessments by family (by title and setting where a report holds several of one family), the
metrics by name and setting (``at``), and gives each pair a verdict: ``regressed``,
``improved``, ``unchanged``, ``new`` or ``gone``.

What counts as a change, so that a gate built on it fails on a regression and never on noise:

- Both figures with counts (``successes / trials``, every rate bastion measures): the change
  is significant when Newcombe's hybrid score interval of the difference of the two rates
  (:func:`~bastion.assess.stats.newcombe_interval`, at level ``alpha``) excludes 0.
- Both figures with a 95% interval but no counts (an AUC): only intervals that do not overlap
  count. That is a stricter test than the 5% level (two 95% intervals that just touch differ
  at about the 0.6% level), and the interval shown for the change is the widest difference
  the two intervals allow.
- A figure without an interval on either side is never significant: nothing says how large
  its noise is.
- Whether a change is better or worse depends on the figure (:func:`direction`): robust,
  clean and certified accuracy are better higher; what an attack achieves (success rate,
  membership AUC, extraction fidelity, ...) is better lower. A figure of unknown direction
  (a control, a setting, a cost) is reported when it changes beyond noise and never fails.
- A figure marked ``limited`` (cut short by a query budget, say), or from an assessment that
  did not complete, errs in one known direction: an attack cut short under-reports what it
  can do, so the figure looks safer than the truth ("optimistic"); the certified accuracy
  beyond the largest radius the sample size can certify is a floor, worse than the truth
  ("pessimistic"). A regression is counted only when no limit could have produced it: not
  when the old figure is optimistic (it flattered the old model) nor when the new one is
  pessimistic. A limit on the other side only makes the true regression larger, so it still
  counts. Improvements are treated the same way, mirrored. A significant change left
  uncounted keeps ``significant=True``, the verdict ``unchanged`` and says why.

Matching ignores ``queries`` in a metric's ``at`` (what an attack spent is a measurement,
not a setting) and adds the threat's norm to a figure measured at an epsilon, where the
assessment's setting names the norm, so robust accuracy at L2 eps=0.5 never meets robust
accuracy at Linf eps=0.5.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bastion.assess.stats import newcombe_interval, z_for
from bastion.core.errors import ConfigError
from bastion.core.files import atomic_write

__all__ = [
    "Better",
    "Change",
    "Comparison",
    "Verdict",
    "compare_assessments",
    "compare_reports",
    "direction",
    "load_report",
]

Better = Literal["higher", "lower"]
Verdict = Literal["regressed", "improved", "unchanged", "new", "gone"]
_Bias = Literal["optimistic", "pessimistic"]

#: which way is better, by metric name, for every family that produces it
_DIRECTIONS: dict[str, Better] = {
    # what the model keeps: higher is better
    "robust_accuracy": "higher",
    "clean_accuracy": "higher",
    "certified_accuracy": "higher",
    "average_certified_radius": "higher",
    "plain_pgd_accuracy": "higher",
    "accuracy_under_uap": "higher",
    "patched_accuracy": "higher",
    # the defences' detection of poison (data screening) and the per-class recall that the
    # constrained assessment keeps under attack
    "recall": "higher",
    "precision": "higher",
    "roc_auc": "higher",
    "recall_at_5pct_fpr": "higher",
    # what an attack achieves: lower is better
    "attack_success_rate": "lower",
    "patch_success_rate": "lower",
    "fooling_rate": "lower",
    "accuracy_drop": "lower",
    "fidelity": "lower",
    "agreement": "lower",
    "copy_accuracy": "lower",
    "transfer_rate": "lower",
    "advantage": "lower",
    "recognizable": "lower",
    "attribute_accuracy": "lower",
    "target_confidence": "lower",
    "abstention_rate": "lower",
    "fpr": "lower",
    "backdoored": "lower",
}

#: names whose direction depends on the family
_FAMILY_DIRECTIONS: dict[tuple[str, str], Better] = {
    ("membership", "auc"): "lower",
    ("membership", "tpr"): "lower",
    ("membership", "advantage"): "lower",
}

#: figures with no better way on purpose: controls (what chance or a clean model achieves),
#: settings (the poison budget) and costs (queries, seconds); reported, never failing
_UNDIRECTED = frozenset(
    {
        "baseline_accuracy",
        "baseline_success_rate",
        "random_patch_success_rate",
        "noise_fooling_rate",
        "poison_budget",
        "poison_fraction",
        "patch_share",
        "queries",
        "training_seconds",
        "flagged",
        "kept",
        "anomaly_index",
        "constraint_violations",
    }
)

#: figures whose ``limited`` mark means a floor (worse than the truth), not a ceiling
_PESSIMISTIC_LIMITS = frozenset({"certified_accuracy"})

#: keys of a metric's ``at`` that record what was measured, not where: left out of matching
_MEASURED_AT = frozenset({"queries"})

_REPORT_SCHEMA = "2.0"


def direction(family: str, name: str) -> Better | None:
    """Whether a higher or a lower ``name`` is better in an assessment of ``family``; None
    for a figure of unknown direction (a control, a setting, a cost), which never fails a
    gate."""
    return _FAMILY_DIRECTIONS.get((family, name)) or _DIRECTIONS.get(name)


@dataclass
class Change:
    """One figure in the old and the new assessments, and the verdict on the change.

    Attributes:
        family: the assessment's family (``evasion``).
        assessment: the assessment's title.
        name: the metric's machine name (``robust_accuracy``).
        label: how a person reads it.
        at: where it was measured (the metric's ``at``, with the threat's ``norm`` beside an
            ``epsilon`` where the assessment names it).
        old, new: the figures (None on the side that lacks it).
        old_ci95, new_ci95: their 95% intervals.
        old_count, new_count: their ``(successes, trials)``.
        unit: ``fraction``, ``queries``, ...
        delta: ``new - old``.
        delta_interval: the interval of ``delta`` (at level ``1 - alpha`` with counts; the
            widest difference the two 95% intervals allow without).
        better: ``higher`` or ``lower``, None when unknown.
        significant: whether the change is beyond noise.
        verdict: ``regressed``, ``improved``, ``unchanged``, ``new`` or ``gone``.
        why: the verdict in words.
        old_limited, new_limited: why a side's figure may be off (a query budget, an
            incomplete assessment), or None.
    """

    family: str
    assessment: str
    name: str
    label: str
    at: dict[str, Any]
    old: float | None
    new: float | None
    old_ci95: tuple[float, float] | None = None
    new_ci95: tuple[float, float] | None = None
    old_count: tuple[int, int] | None = None
    new_count: tuple[int, int] | None = None
    unit: str = "fraction"
    delta: float | None = None
    delta_interval: tuple[float, float] | None = None
    better: Better | None = None
    significant: bool = False
    verdict: Verdict = "unchanged"
    why: str = ""
    old_limited: str | None = None
    new_limited: str | None = None

    @property
    def where(self) -> str:
        """The setting in words (``norm=linf, epsilon=0.1``), or an empty string."""
        return ", ".join(f"{k}={_short(v)}" for k, v in self.at.items())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Comparison:
    """Every figure of two sets of assessments, old against new.

    Attributes:
        changes: one :class:`Change` per figure, in the order of the reports.
        alpha: the level of the tests (0.05: 95% intervals of the changes).
        old, new: what each side was (target, data, date, command), where known.
    """

    changes: list[Change]
    alpha: float = 0.05
    old: dict[str, Any] = field(default_factory=dict)
    new: dict[str, Any] = field(default_factory=dict)

    #: the columns of :meth:`rows`; a figure marked * is limited (see ``why``)
    COLUMNS = ("figure", "old", "new", "change", "interval", "verdict")
    DETAILED_COLUMNS = (
        "assessment",
        "figure",
        "where",
        "old",
        "new",
        "change",
        "interval",
        "verdict",
    )

    @property
    def regressions(self) -> list[Change]:
        """The changes that fail a gate: significant, worse, and not a limit's doing."""
        return [c for c in self.changes if c.verdict == "regressed"]

    @property
    def improvements(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "improved"]

    @property
    def significant(self) -> list[Change]:
        """Every change beyond noise, counted or not (regressions, improvements, changes of
        unknown direction, and those a limit may explain)."""
        return [c for c in self.changes if c.significant]

    @property
    def unchanged(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "unchanged" and not c.significant]

    @property
    def failed(self) -> bool:
        """Whether a gate on this comparison fails: some figure regressed."""
        return bool(self.regressions)

    def counts(self) -> dict[str, int]:
        """How many changes have each verdict."""
        out = dict.fromkeys(("regressed", "improved", "unchanged", "new", "gone"), 0)
        for c in self.changes:
            out[c.verdict] += 1
        return out

    def summary(self) -> str:
        """One line: how many figures regressed, improved, stayed within noise, came, went."""
        n = self.counts()
        noise = len(self.unchanged)
        parts = [
            f"{n['regressed']} regressed",
            f"{n['improved']} improved",
            f"{noise} unchanged within noise",
        ]
        other = n["unchanged"] - noise
        if other:
            parts.append(f"{other} changed beyond noise without a verdict")
        parts += [f"{n['new']} new", f"{n['gone']} gone"]
        return f"{', '.join(parts)} (of {len(self.changes)} figures)"

    def rows(self, significant_only: bool = False, *, detailed: bool = False) -> list[list[str]]:
        """Table rows as text, under :attr:`COLUMNS` (narrow enough for a terminal) or, with
        ``detailed``, under :attr:`DETAILED_COLUMNS` (the assessment, the setting and the
        counts too). The verdict column says ``noise`` for a change within noise and
        ``not counted`` for one beyond noise that has no verdict (see ``why``)."""
        out = []
        for c in self.changes:
            if significant_only and not c.significant:
                continue
            verdict: str = c.verdict
            if c.verdict == "unchanged":
                verdict = "not counted" if c.significant else "noise"
            change = _delta_text(c.delta, c.unit) if c.delta is not None else "-"
            interval = "-"
            if c.delta_interval is not None:
                lo, hi = c.delta_interval
                interval = f"{_delta_text(lo, c.unit, False)} to {_delta_text(hi, c.unit)}"
            if detailed:
                old = _value_text(c.old, c.old_count, c.unit, c.old_limited)
                new = _value_text(c.new, c.new_count, c.unit, c.new_limited)
                out.append([c.assessment, c.label, c.where, old, new, change, interval, verdict])
            else:
                old = _value_text(c.old, None, c.unit, c.old_limited)
                new = _value_text(c.new, None, c.unit, c.new_limited)
                out.append([c.label, old, new, change, interval, verdict])
        return out

    def to_markdown(self) -> str:
        """The comparison as Markdown: the verdict, the changes beyond noise, every figure."""
        lines = ["# Comparison with the baseline", ""]
        for side in ("old", "new"):
            info = getattr(self, side)
            if info:
                what = ", ".join(f"{k} {v}" for k, v in info.items() if v)
                lines.append(f"- {side}: {what}")
        if self.old or self.new:
            lines.append("")
        verdict = (
            f"**Regressed**: {len(self.regressions)} figure(s) got worse beyond noise."
            if self.failed
            else "**No regression** beyond noise."
        )
        lines += [verdict, "", self.summary() + ".", ""]
        significant = [c for c in self.changes if c.significant]
        if significant:
            lines += ["## Changes beyond noise", ""]
            lines += _md_table(self.COLUMNS, self.rows(significant_only=True))
            lines += [""]
            lines += [f"- {c.label} ({c.where or 'overall'}): {c.why}" for c in significant]
            lines.append("")
        lines += ["## Every figure", ""]
        lines += _md_table(self.DETAILED_COLUMNS, self.rows(detailed=True))
        lines += [
            "",
            f"Changes are tested at level {self.alpha:g}: the interval is Newcombe's hybrid "
            f"score interval ({1 - self.alpha:.0%}) of the difference of two rates where both "
            "have counts, the widest difference two 95% intervals allow where they have "
            "intervals only (significant when they do not overlap); figures without intervals "
            "are never significant. A figure marked * is limited: it may be off in a known "
            "direction (see its reason).",
            "",
        ]
        return "\n".join(lines)

    def write(self, folder: str | Path) -> list[Path]:
        """Write ``comparison.json`` and ``comparison.md`` into ``folder`` (atomically)."""
        folder = Path(folder)
        text = json.dumps(self.as_dict(), indent=2) + "\n"
        return [
            atomic_write(folder / "comparison.json", text),
            atomic_write(folder / "comparison.md", self.to_markdown()),
        ]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data (``comparison.json``)."""
        return {
            "alpha": self.alpha,
            "failed": self.failed,
            "summary": self.summary(),
            "counts": self.counts(),
            "old": dict(self.old),
            "new": dict(self.new),
            "changes": [_plain(c.as_dict()) for c in self.changes],
        }


# ---------------------------------------------------------------------- reading reports
def load_report(path: str | Path, *, what: str = "report") -> dict[str, Any]:
    """A ``report.json`` (or a report folder holding one), checked to be a schema 2.0
    report; a :class:`ConfigError` in one line otherwise."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "report.json"
    if not p.is_file():
        raise ConfigError(f"the {what} {p}: no such file")
    try:
        data = json.loads(p.read_text("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"the {what} {p} is not a text file, so not a report.json") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"the {what} {p} is not JSON (line {exc.lineno}: {exc.msg}); give a report.json"
        ) from None
    except OSError as exc:
        raise ConfigError(f"the {what} {p} cannot be read: {exc.strerror}") from None
    _check_report(data, f"the {what} {p}")
    return data  # type: ignore[no-any-return]


def _check_report(data: Any, what: str) -> None:
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ConfigError(f"{what} is not a bastion report (no schema_version)")
    version = data["schema_version"]
    if version != _REPORT_SCHEMA:
        raise ConfigError(
            f"{what} has schema {version}; comparisons read schema {_REPORT_SCHEMA} reports: "
            "rerun its scan with this version of bastion"
        )
    assessments = data.get("assessments")
    if not isinstance(assessments, list) or not all(_valid_assessment(a) for a in assessments):
        raise ConfigError(f"{what} has no valid list of assessments (each with family, metrics)")


def _valid_assessment(a: Any) -> bool:
    if not isinstance(a, Mapping) or not isinstance(a.get("family"), str):
        return False
    metrics = a.get("metrics")
    return isinstance(metrics, list) and all(
        isinstance(m, Mapping) and isinstance(m.get("name"), str) for m in metrics
    )


def _side(report: Mapping[str, Any]) -> dict[str, Any]:
    target = report.get("target") or {}
    dataset = report.get("dataset") or {}
    return {
        "target": target.get("name") if isinstance(target, dict) else None,
        "data": dataset.get("name") if isinstance(dataset, dict) else None,
        "created": report.get("created"),
        "command": report.get("command"),
    }


def compare_reports(
    old: Mapping[str, Any], new: Mapping[str, Any], *, alpha: float = 0.05
) -> Comparison:
    """Compare two ``report.json`` contents (schema 2.0): every figure of ``new`` against
    ``old``. A report of another schema, or no report at all, is a :class:`ConfigError`."""
    _check_report(old, "the old report")
    _check_report(new, "the new report")
    result = compare_assessments(old["assessments"], new["assessments"], alpha=alpha)
    result.old, result.new = _side(old), _side(new)
    return result


# ---------------------------------------------------------------------- comparing
def compare_assessments(
    old: Sequence[Mapping[str, Any]],
    new: Sequence[Mapping[str, Any]],
    *,
    alpha: float = 0.05,
) -> Comparison:
    """Compare two lists of assessments in their JSON form (the ``assessments`` of
    ``report.json``): a :class:`Change` per figure, each with its verdict.

    ``alpha`` is the level of the test on rates with counts (0.05: a 95% interval of the
    change must exclude 0). See the module's documentation for the rules.
    """
    try:
        z = z_for(alpha)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for side, given in (("old", old), ("new", new)):
        if not all(_valid_assessment(a) for a in given):
            raise ConfigError(
                f"the {side} assessments are not all assessments in report.json's form "
                "(each a dict with a family and a list of metrics with names)"
            )
    changes: list[Change] = []
    for a_old, a_new in _pair_assessments(list(old), list(new)):
        changes += _compare_pair(a_old, a_new, alpha, z)
    return Comparison(changes, alpha=alpha)


def _setting_key(a: Mapping[str, Any]) -> str:
    return json.dumps(a.get("setting") or {}, sort_keys=True, default=str)


def _pair_assessments(
    old: list[Mapping[str, Any]], new: list[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]]:
    """Pairs of old and new assessments: by family; where a side holds several of one
    family, by title and setting, then by title; what is left over stands alone."""
    families = list(dict.fromkeys([str(a["family"]) for a in [*old, *new]]))
    pairs: list[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]] = []
    for family in families:
        olds = [a for a in old if a["family"] == family]
        news = [a for a in new if a["family"] == family]
        if len(olds) == 1 and len(news) == 1:
            pairs.append((olds[0], news[0]))
            continue
        matched: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
        for key in (lambda a: (a.get("title"), _setting_key(a)), lambda a: a.get("title")):
            for a in list(olds):
                found = next((b for b in news if key(b) == key(a)), None)
                if found is not None:
                    matched.append((a, found))
                    olds.remove(a)
                    news.remove(found)
        pairs += [(a, b) for a, b in matched]
        pairs += [(a, None) for a in olds]
        pairs += [(None, b) for b in news]
    return pairs


def _norm(a: Mapping[str, Any]) -> str | None:
    setting = a.get("setting") or {}
    threat = setting.get("threat") if isinstance(setting, dict) else None
    norm = threat.get("norm") if isinstance(threat, dict) else None
    return norm if isinstance(norm, str) else None


def _where(metric: Mapping[str, Any], norm: str | None) -> dict[str, Any]:
    at = dict(metric.get("at") or {})
    # an epsilon means nothing without its norm; a figure without one does not depend on it
    if norm is not None and "epsilon" in at and "norm" not in at:
        at = {"norm": norm, **at}
    return at


def _match_key(name: str, at: Mapping[str, Any]) -> str:
    kept = {k: v for k, v in at.items() if k not in _MEASURED_AT}
    return json.dumps([name, kept], sort_keys=True, default=str)


def _limit(metric: Mapping[str, Any], a: Mapping[str, Any]) -> str | None:
    if metric.get("limited"):
        return str(metric["limited"])
    if a.get("complete") is False:
        return "the assessment did not complete"
    return None


def _compare_pair(
    a_old: Mapping[str, Any] | None, a_new: Mapping[str, Any] | None, alpha: float, z: float
) -> list[Change]:
    ref = a_new if a_new is not None else a_old
    assert ref is not None
    family, title = str(ref["family"]), str(ref.get("title") or ref["family"])
    olds: dict[str, list[tuple[Mapping[str, Any], dict[str, Any]]]] = {}
    order: list[str] = []
    if a_old is not None:
        norm = _norm(a_old)
        for m in a_old["metrics"]:
            at = _where(m, norm)
            key = _match_key(m["name"], at)
            olds.setdefault(key, []).append((m, at))
            order.append(key)
    out: list[Change] = []
    if a_new is not None:
        norm = _norm(a_new)
        for m in a_new["metrics"]:
            at = _where(m, norm)
            key = _match_key(m["name"], at)
            if olds.get(key):
                m_old, _ = olds[key].pop(0)
                out.append(_change(family, title, m_old, m, at, a_old or {}, a_new, alpha, z))
            else:
                out.append(_alone(family, title, m, at, a_new, "new"))
    for key in order:
        for m, at in olds.get(key, []):
            out.append(_alone(family, title, m, at, a_old or {}, "gone"))
        olds[key] = []
    return out


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) for v in value):
        return (float(value[0]), float(value[1]))
    return None


def _count(value: Any) -> tuple[int, int] | None:
    pair = _pair(value)
    if pair is None or pair[1] <= 0 or not 0 <= pair[0] <= pair[1]:
        return None
    return (int(pair[0]), int(pair[1]))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _value(metric: Mapping[str, Any]) -> float | None:
    v = metric.get("value")
    return float(v) if isinstance(v, (int, float)) and _number(v) else None


def _alone(
    family: str,
    title: str,
    m: Mapping[str, Any],
    at: dict[str, Any],
    a: Mapping[str, Any],
    verdict: Literal["new", "gone"],
) -> Change:
    name = str(m["name"])
    change = Change(
        family=family,
        assessment=title,
        name=name,
        label=str(m.get("label") or name),
        at=at,
        old=None,
        new=None,
        unit=str(m.get("unit") or ""),
        better=direction(family, name),
        verdict=verdict,
        why=(
            "measured only in the new assessment"
            if verdict == "new"
            else "measured only in the old assessment"
        )
        + ": nothing to compare it with",
    )
    side = "new" if verdict == "new" else "old"
    setattr(change, side, _value(m))
    setattr(change, f"{side}_ci95", _pair(m.get("ci95")))
    setattr(change, f"{side}_count", _count(m.get("count")))
    setattr(change, f"{side}_limited", _limit(m, a))
    return change


def _change(
    family: str,
    title: str,
    m_old: Mapping[str, Any],
    m_new: Mapping[str, Any],
    at: dict[str, Any],
    a_old: Mapping[str, Any],
    a_new: Mapping[str, Any],
    alpha: float,
    z: float,
) -> Change:
    name = str(m_new["name"])
    unit = str(m_new.get("unit") or "")
    change = Change(
        family=family,
        assessment=title,
        name=name,
        label=str(m_new.get("label") or name),
        at=at,
        old=_value(m_old),
        new=_value(m_new),
        old_ci95=_pair(m_old.get("ci95")),
        new_ci95=_pair(m_new.get("ci95")),
        old_count=_count(m_old.get("count")),
        new_count=_count(m_new.get("count")),
        unit=unit,
        better=direction(family, name),
        old_limited=_limit(m_old, a_old),
        new_limited=_limit(m_new, a_new),
    )
    if change.old is None or change.new is None:
        change.why = "no figure on one side (not a finite number): nothing to compare"
        return change
    change.delta = change.new - change.old
    moved = f"{_value_text(change.old, unit=unit)} -> {_value_text(change.new, unit=unit)}"
    by_counts = change.old_count is not None and change.new_count is not None
    if by_counts:
        assert change.old_count is not None and change.new_count is not None
        change.delta_interval = newcombe_interval(change.old_count, change.new_count, z)
    elif change.old_ci95 is not None and change.new_ci95 is not None:
        (lo_o, hi_o), (lo_n, hi_n) = change.old_ci95, change.new_ci95
        change.delta_interval = (lo_n - hi_o, hi_n - lo_o)
    if change.delta_interval is None:
        change.why = f"{moved}: without intervals on both sides, no change is told from noise"
        return change
    lo, hi = change.delta_interval
    change.significant = lo > 0 or hi < 0
    if by_counts:
        test = (
            f"the {1 - alpha:.0%} interval of the change, {_delta_text(lo, unit)} to "
            f"{_delta_text(hi, unit)}, {'excludes' if change.significant else 'includes'} 0"
        )
    else:
        test = f"the two 95% intervals {'do not overlap' if change.significant else 'overlap'}"
    if not change.significant:
        change.why = f"{moved}: within noise ({test})"
        return change
    shown = f"{moved} ({_delta_text(change.delta, unit)}; {test})"
    if change.better is None:
        change.why = (
            f"{shown}: beyond noise, but which way is better is not known for this figure "
            "(reported, never failing)"
        )
        return change
    worse = (change.delta < 0) == (change.better == "higher")
    change.verdict = "regressed" if worse else "improved"
    # a limit errs one way; a change in the direction that limit would produce may be its doing
    doubt = _doubt(change, worse)
    if doubt is not None:
        change.verdict = "unchanged"
        counted = "a regression" if worse else "an improvement"
        change.why = f"{shown}: beyond noise, but {doubt}; not counted as {counted}"
        return change
    how = "worse" if worse else "better"
    change.why = f"{shown}: {how} beyond noise ({change.better} is better)"
    notes = [
        f"the {side} figure is limited ({reason})"
        for side, reason in (("old", change.old_limited), ("new", change.new_limited))
        if reason
    ]
    if notes:
        change.why += f"; {' and '.join(notes)}, which can only make the true change larger"
    return change


def _doubt(change: Change, worse: bool) -> str | None:
    """Why a limit may explain the change, or None when no limit could."""
    pessimistic = change.name in _PESSIMISTIC_LIMITS
    # an optimistic figure looks better than the truth; a pessimistic one, worse
    old_flatters = change.old_limited is not None and not pessimistic
    new_flatters = change.new_limited is not None and not pessimistic
    old_understates = change.old_limited is not None and pessimistic
    new_understates = change.new_limited is not None and pessimistic
    bound = "a floor" if pessimistic else "a bound that may flatter it"
    if worse and old_flatters:
        return f"the old figure is {bound} ({change.old_limited}), so the drop may be the limit's"
    if worse and new_understates:
        return f"the new figure is {bound} ({change.new_limited}), so the drop may be the limit's"
    if not worse and new_flatters:
        return f"the new figure is {bound} ({change.new_limited}), so the gain may be the limit's"
    if not worse and old_understates:
        return f"the old figure is {bound} ({change.old_limited}), so the gain may be the limit's"
    return None


# ---------------------------------------------------------------------- text
def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _value_text(
    value: float | None,
    count: tuple[int, int] | None = None,
    unit: str = "fraction",
    limited: str | None = None,
) -> str:
    if value is None:
        return "-"
    text = f"{value:.1%}" if unit == "fraction" else f"{value:.4g}"
    if count is not None:
        text += f" ({count[0]}/{count[1]})"
    return text + ("*" if limited else "")


def _delta_text(delta: float, unit: str, with_unit: bool = True) -> str:
    if unit == "fraction":
        return f"{delta * 100:+.1f}" + (" pp" if with_unit else "")
    return f"{delta:+.4g}"


def _md_table(columns: Iterable[str], rows: list[list[str]]) -> list[str]:
    cols = list(columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
