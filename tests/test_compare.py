"""Comparing two sets of assessments: a regression is found, noise is not, limits are weighed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bastion.assess.compare import (
    _DIRECTIONS,
    _FAMILY_DIRECTIONS,
    _UNDIRECTED,
    Comparison,
    compare_assessments,
    compare_reports,
    direction,
    load_report,
)
from bastion.assess.stats import newcombe_interval, wilson_interval
from bastion.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def rate(name: str, hits: int, total: int, limited: str | None = None, **at: Any) -> dict[str, Any]:
    """A metric as report.json holds it: a rate with its interval and count."""
    return {
        "name": name,
        "label": name.replace("_", " "),
        "value": hits / total,
        "ci95": list(wilson_interval(hits, total)),
        "count": [hits, total],
        "unit": "fraction",
        "at": at,
        "limited": limited,
    }


def assessment(*metrics: dict[str, Any], family: str = "evasion", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "family": family,
        "title": f"{family} assessment",
        "complete": True,
        "limits": [],
        "setting": {"threat": {"norm": "linf"}} if family == "evasion" else {},
        "metrics": list(metrics),
    }
    return base | kw


def report(*assessments: dict[str, Any], version: str = "2.0") -> dict[str, Any]:
    return {
        "schema_version": version,
        "target": {"name": "model"},
        "dataset": {"name": "digits"},
        "created": "2025-01-01T00:00:00+00:00",
        "assessments": list(assessments),
    }


def only(comparison: Comparison, name: str) -> Any:
    found = [c for c in comparison.changes if c.name == name]
    assert len(found) == 1, comparison.changes
    return found[0]


def test_the_public_names() -> None:
    import bastion.assess.compare

    assert set(bastion.assess.compare.__all__) == {
        "Better",
        "Change",
        "Comparison",
        "Verdict",
        "compare_assessments",
        "compare_reports",
        "direction",
        "load_report",
    }


def test_newcombe_matches_the_published_example() -> None:
    # Newcombe (1998), table II: 56/70 against 48/80, difference 0.2, method 10: 0.0524-0.3339
    lo, hi = newcombe_interval((48, 80), (56, 70))
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)
    lo, hi = newcombe_interval((56, 70), (48, 80))
    assert (round(lo, 4), round(hi, 4)) == (-0.3339, -0.0524)


def test_identical_reports_show_nothing_significant() -> None:
    a = assessment(
        rate("clean_accuracy", 98, 100),
        rate("robust_accuracy", 44, 100, epsilon=0.1),
        rate("robust_accuracy", 3, 100, epsilon=0.3),
    )
    comparison = compare_reports(report(a), report(a))
    assert comparison.significant == [] and not comparison.failed
    assert {c.verdict for c in comparison.changes} == {"unchanged"}
    assert all(c.delta == 0 for c in comparison.changes)
    assert comparison.summary().startswith("0 regressed, 0 improved, 3 unchanged within noise")


def test_a_clear_regression_is_found() -> None:
    comparison = compare_assessments(
        [assessment(rate("robust_accuracy", 90, 100, epsilon=0.1))],
        [assessment(rate("robust_accuracy", 40, 100, epsilon=0.1))],
    )
    change = only(comparison, "robust_accuracy")
    assert change.verdict == "regressed" and change.significant and change.better == "higher"
    assert change.delta == pytest.approx(-0.5)
    lo, hi = change.delta_interval
    assert lo < -0.5 < hi < 0
    assert change.at == {"norm": "linf", "epsilon": 0.1}
    assert "90.0% -> 40.0%" in change.why and "excludes 0" in change.why
    assert comparison.failed and comparison.regressions == [change]


def test_noise_is_not_a_regression() -> None:
    comparison = compare_assessments(
        [assessment(rate("robust_accuracy", 50, 100, epsilon=0.1))],
        [assessment(rate("robust_accuracy", 47, 100, epsilon=0.1))],
    )
    change = only(comparison, "robust_accuracy")
    assert change.verdict == "unchanged" and not change.significant
    lo, hi = change.delta_interval
    assert lo < 0 < hi
    assert "within noise" in change.why and "includes 0" in change.why
    assert not comparison.failed and comparison.unchanged == [change]


def test_alpha_sets_the_level_of_the_test() -> None:
    old = [assessment(rate("robust_accuracy", 50, 100, epsilon=0.1))]
    new = [assessment(rate("robust_accuracy", 38, 100, epsilon=0.1))]
    assert not compare_assessments(old, new).failed
    loose = compare_assessments(old, new, alpha=0.2)
    assert loose.failed
    assert "80% interval" in loose.regressions[0].why
    with pytest.raises(ConfigError, match="alpha"):
        compare_assessments(old, new, alpha=1.5)


def test_an_improvement_is_not_a_failure() -> None:
    comparison = compare_assessments(
        [assessment(rate("robust_accuracy", 40, 100, epsilon=0.1))],
        [assessment(rate("robust_accuracy", 90, 100, epsilon=0.1))],
    )
    assert [c.verdict for c in comparison.changes] == ["improved"]
    assert comparison.improvements and not comparison.failed


@pytest.mark.parametrize(
    ("family", "name", "at"),
    [
        ("extraction", "fidelity", {"attack": "knockoff", "queries": 500}),
        ("extraction", "transfer_rate", {"attack": "knockoff", "epsilon": 0.1}),
        ("membership", "tpr", {"attack": "loss", "fpr": 0.01}),
        ("inversion", "recognizable", {"attack": "mi-face", "chance": 0.1}),
        ("poisoning", "attack_success_rate", {}),
        ("universal", "fooling_rate", {"epsilon": 0.1}),
    ],
)
def test_what_an_attack_achieves_is_better_lower(
    family: str, name: str, at: dict[str, Any]
) -> None:
    old = [assessment(rate(name, 20, 100, **at), family=family)]
    new = [assessment(rate(name, 60, 100, **at), family=family)]
    change = only(compare_assessments(old, new), name)
    assert change.better == "lower" and change.verdict == "regressed"
    back = only(compare_assessments(new, old), name)
    assert back.verdict == "improved"


def test_intervals_without_counts_count_only_apart() -> None:
    def auc(value: float, lo: float, hi: float) -> dict[str, Any]:
        return {"name": "auc", "value": value, "ci95": [lo, hi], "count": None, "unit": "",
                "at": {"attack": "loss"}, "limited": None}  # fmt: skip

    apart = compare_assessments(
        [assessment(auc(0.55, 0.50, 0.60), family="membership")],
        [assessment(auc(0.80, 0.75, 0.85), family="membership")],
    )
    change = only(apart, "auc")
    assert change.verdict == "regressed" and "do not overlap" in change.why
    assert change.delta_interval == pytest.approx((0.15, 0.35))
    overlapping = compare_assessments(
        [assessment(auc(0.55, 0.45, 0.65), family="membership")],
        [assessment(auc(0.66, 0.58, 0.74), family="membership")],
    )
    assert only(overlapping, "auc").verdict == "unchanged"
    assert not only(overlapping, "auc").significant


def test_a_figure_without_an_interval_never_fails() -> None:
    def drop(value: float) -> dict[str, Any]:
        return {"name": "accuracy_drop", "value": value, "ci95": None, "count": None,
                "unit": "fraction", "at": {}, "limited": None}  # fmt: skip

    comparison = compare_assessments(
        [assessment(drop(0.01), family="poisoning")], [assessment(drop(0.6), family="poisoning")]
    )
    change = only(comparison, "accuracy_drop")
    assert change.better == "lower" and not change.significant and change.verdict == "unchanged"
    assert "without intervals" in change.why
    assert not comparison.failed


def test_a_figure_of_unknown_direction_is_reported_never_failing() -> None:
    comparison = compare_assessments(
        [assessment(rate("noise_fooling_rate", 5, 100, epsilon=0.1), family="universal")],
        [assessment(rate("noise_fooling_rate", 70, 100, epsilon=0.1), family="universal")],
    )
    change = only(comparison, "noise_fooling_rate")
    assert change.better is None and change.significant and change.verdict == "unchanged"
    assert "not known" in change.why
    assert comparison.significant == [change] and not comparison.failed
    assert comparison.rows(significant_only=True)[0][-1] == "not counted"


def test_a_limit_that_could_explain_a_drop_is_not_counted() -> None:
    """An attack cut short flatters the model: a drop from a limited old figure may be only
    the limit; a drop to a limited new figure is real (the truth is lower still)."""
    budget = "query budget"
    old_limited = compare_assessments(
        [assessment(rate("robust_accuracy", 90, 100, limited=budget, epsilon=0.1))],
        [assessment(rate("robust_accuracy", 40, 100, epsilon=0.1))],
    )
    change = only(old_limited, "robust_accuracy")
    assert change.significant and change.verdict == "unchanged" and not old_limited.failed
    assert "query budget" in change.why and "not counted as a regression" in change.why
    new_limited = compare_assessments(
        [assessment(rate("robust_accuracy", 90, 100, epsilon=0.1))],
        [assessment(rate("robust_accuracy", 40, 100, limited=budget, epsilon=0.1))],
    )
    change = only(new_limited, "robust_accuracy")
    assert change.verdict == "regressed" and "only make the true change larger" in change.why
    # and an improvement measured by a limited attack may be only the limit
    gain = compare_assessments(
        [assessment(rate("robust_accuracy", 40, 100, epsilon=0.1))],
        [assessment(rate("robust_accuracy", 90, 100, limited=budget, epsilon=0.1))],
    )
    assert only(gain, "robust_accuracy").verdict == "unchanged"
    assert gain.improvements == []


def test_a_capped_certificate_errs_the_other_way() -> None:
    """Certified accuracy beyond the certifiable radius is a floor: a drop to it may be the
    cap's doing, a drop from it is real."""
    cap = "no input can be certified beyond radius 0.5"
    family = "certification"
    to_cap = compare_assessments(
        [assessment(rate("certified_accuracy", 80, 100, radius=1.0), family=family)],
        [assessment(rate("certified_accuracy", 10, 100, limited=cap, radius=1.0), family=family)],
    )
    assert only(to_cap, "certified_accuracy").verdict == "unchanged" and not to_cap.failed
    from_cap = compare_assessments(
        [assessment(rate("certified_accuracy", 80, 100, limited=cap, radius=1.0), family=family)],
        [assessment(rate("certified_accuracy", 10, 100, radius=1.0), family=family)],
    )
    assert only(from_cap, "certified_accuracy").verdict == "regressed"


def test_an_incomplete_assessment_is_weighed_like_a_limit() -> None:
    comparison = compare_assessments(
        [assessment(rate("robust_accuracy", 90, 100, epsilon=0.1), complete=False)],
        [assessment(rate("robust_accuracy", 40, 100, epsilon=0.1))],
    )
    change = only(comparison, "robust_accuracy")
    assert change.old_limited == "the assessment did not complete"
    assert "did not complete" in change.why and not comparison.failed


def test_new_and_gone_figures_never_fail() -> None:
    comparison = compare_assessments(
        [assessment(rate("robust_accuracy", 90, 100, epsilon=0.1))],
        [assessment(rate("robust_accuracy", 10, 100, epsilon=0.2))],
    )
    verdicts = {(c.verdict, c.at["epsilon"]) for c in comparison.changes}
    assert verdicts == {("gone", 0.1), ("new", 0.2)}
    gone = next(c for c in comparison.changes if c.verdict == "gone")
    assert gone.old == pytest.approx(0.9) and gone.new is None and gone.old_count == (90, 100)
    assert not comparison.failed and not comparison.significant


def test_an_epsilon_of_another_norm_is_another_figure() -> None:
    l2 = assessment(
        rate("robust_accuracy", 10, 100, epsilon=0.5), setting={"threat": {"norm": "l2"}}
    )
    comparison = compare_assessments(
        [assessment(rate("robust_accuracy", 90, 100, epsilon=0.5))], [l2]
    )
    assert sorted(c.verdict for c in comparison.changes) == ["gone", "new"]
    assert not comparison.failed


def test_queries_spent_do_not_split_a_figure() -> None:
    old = [
        assessment(rate("fidelity", 30, 100, attack="knockoff", queries=480), family="extraction")
    ]
    new = [
        assessment(rate("fidelity", 80, 100, attack="knockoff", queries=500), family="extraction")
    ]
    change = only(compare_assessments(old, new), "fidelity")
    assert change.verdict == "regressed"


def test_several_assessments_of_a_family_pair_by_title() -> None:
    def poisoning(title: str, hits: int) -> dict[str, Any]:
        return assessment(rate("attack_success_rate", hits, 100), family="poisoning", title=title)

    old = [poisoning("Poisoning: badnets", 10), poisoning("Poisoning: clean-label", 50)]
    new = [poisoning("Poisoning: clean-label", 52), poisoning("Poisoning: badnets", 90)]
    comparison = compare_assessments(old, new)
    by_title = {c.assessment: c.verdict for c in comparison.changes}
    assert by_title == {"Poisoning: badnets": "regressed", "Poisoning: clean-label": "unchanged"}


def test_a_wrong_report_is_refused_in_one_line(tmp_path: Path) -> None:
    good = report(assessment(rate("robust_accuracy", 1, 2, epsilon=0.1)))
    with pytest.raises(ConfigError, match=r"schema 1\.0.*schema 2\.0"):
        compare_reports(report(version="1.0"), good)
    with pytest.raises(ConfigError, match="not a bastion report"):
        compare_reports(good, [])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="list of assessments"):
        compare_reports(good, {"schema_version": "2.0", "assessments": [{"metrics": []}]})
    with pytest.raises(ConfigError, match="new assessments are not all"):
        compare_assessments([], [{"family": "evasion", "metrics": [{"value": 1}]}])
    with pytest.raises(ConfigError, match="no such file"):
        load_report(tmp_path / "missing.json", what="baseline")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not JSON"):
        load_report(tmp_path / "bad.json")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "report.json").write_text(json.dumps(good))
    assert load_report(tmp_path / "r") == good


def test_every_metric_bastion_measures_has_a_direction_or_none_on_purpose() -> None:
    """A new metric must say which way is better (or be listed as a control or a cost), so
    the gate never ignores a figure by accident."""
    names: set[str] = set()
    pattern = r"(?:Metric|_rate_metric|_rate)\(\s*(?:name=)?\"([a-z0-9_]+)\""
    for path in (REPO / "src" / "bastion" / "assess").glob("*.py"):
        names |= set(re.findall(pattern, path.read_text()))
    assert {"robust_accuracy", "fidelity", "tpr", "certified_accuracy"} <= names
    known = set(_DIRECTIONS) | {n for _, n in _FAMILY_DIRECTIONS} | _UNDIRECTED
    assert names - known == set()
    assert direction("membership", "auc") == "lower"
    assert direction("poisoning", "roc_auc") == "higher"
    assert direction("extraction", "queries") is None


def test_the_comparison_renders_and_writes(tmp_path: Path) -> None:
    def side(robust: int, clean: int) -> dict[str, Any]:
        return report(
            assessment(
                rate("robust_accuracy", robust, 100, epsilon=0.1),
                rate("clean_accuracy", clean, 100),
            )
        )

    comparison = compare_reports(side(90, 98), side(40, 97))
    md = comparison.to_markdown()
    assert "**Regressed**" in md
    row = "| robust accuracy | 90.0% | 40.0% | -50.0 pp | -60.1 to -37.7 pp | regressed |"
    assert row in md
    assert "| clean accuracy |" in md and "| noise |" in md
    written = comparison.write(tmp_path)
    assert [p.name for p in written] == ["comparison.json", "comparison.md"]
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert data["failed"] is True and data["counts"]["regressed"] == 1
    assert data["changes"][0]["verdict"] == "regressed"
    assert data["old"]["target"] == "model"
    assert len(comparison.rows()[0]) == len(Comparison.COLUMNS)
    assert len(comparison.rows(detailed=True)[0]) == len(Comparison.DETAILED_COLUMNS)


def test_two_real_scans(demo: Any) -> None:
    """Real reports of one model, bare and behind a defence that resists small steps: the
    defence lost is a regression, the same scan twice is noise-free."""
    from bastion.assess import scan
    from bastion.core.assessment import Report
    from bastion.core.threat import Threat
    from bastion.defences import DefendedTarget, create_defence
    from bastion.report.json import to_dict

    target, data = demo

    def scanned(model: Any) -> dict[str, Any]:
        result = scan(
            model,
            data,
            Threat(epsilons=(0.1,)),
            samples=60,
            attacks=["fgsm", "pgd"],
            attack_params={"pgd": {"steps": 5}},
        )
        return to_dict(Report([result.to_assessment()]))

    bare = scanned(target)
    defended = scanned(DefendedTarget(target, [create_defence("squeeze:bits=1")]))
    dropped = compare_reports(defended, bare)
    assert dropped.failed
    worse = {(c.name, c.at.get("access")) for c in dropped.regressions}
    assert ("robust_accuracy", None) in worse
    assert only_overall(dropped).old_count[0] > only_overall(dropped).new_count[0]
    assert not compare_reports(bare, scanned(target)).significant
    assert (
        compare_reports(bare, defended).improvements and not compare_reports(bare, defended).failed
    )


def only_overall(comparison: Comparison) -> Any:
    return next(
        c for c in comparison.changes if c.name == "robust_accuracy" and "access" not in c.at
    )
