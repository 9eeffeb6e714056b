"""The pytest plugin: robustness tests in a team's own suite, with failures that say the figure.

The suites below run in pytest's ``pytester``. They pass ``-p bastion.testing.plugin`` only
when pytest would not load the plugin by itself (bastion installed without its entry point,
as in an editable install made before it existed): both at once would register it twice.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest

from bastion.core.errors import ConfigError, DataError
from bastion.testing import Figure, RobustnessResult, robustness

from helpers import plugin_args, settle_imports

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "bastion.testing.plugin"
#: one cheap measurement: the demo CNN, FGSM, 60 inputs (robust accuracy near 0.45)
CALL = 'robustness("digits-cnn", eps=0.1, attacks=["fgsm"], samples=60)'


@pytest.fixture(autouse=True)
def _settled() -> None:
    settle_imports()


def test_a_passing_suite(pytester: pytest.Pytester, demo: Any) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.robustness
        def test_holds_at_eps_0_1(robustness):
            r = {CALL}
            assert r.robust_accuracy >= 0.2
            assert r.clean_accuracy >= 0.9
            assert r.samples == 60
        """
    )
    result = pytester.runpytest("--strict-markers", *plugin_args())
    result.assert_outcomes(passed=1)


def test_a_failure_says_the_figure_its_interval_and_setting(
    pytester: pytest.Pytester, demo: Any
) -> None:
    measured = eval(CALL, {"robustness": robustness})  # the same call, so the same figure
    figure = measured.robust_accuracy
    lo, hi = figure.interval
    near = round(hi - 0.01, 2)  # within the interval: the message says more samples would tell
    pytester.makepyfile(
        f"""
        from bastion.testing import robustness

        def test_far_below():
            r = {CALL}
            assert r.robust_accuracy >= 0.95

        def test_within_the_interval():
            r = {CALL}
            assert {near} <= r.robust_accuracy
        """
    )
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(failed=2)
    text = result.stdout.str()
    described = (
        f"robust accuracy {float(figure):.3g} (95% CI {lo:.2f}-{hi:.2f}, "
        f"{figure.count[0]}/60 inputs, linf eps=0.1)"
    )
    assert figure.describe() == described
    assert f"{described} is below 0.95" in text
    assert "0.95 lies outside the 95% interval" in text
    assert f"{described} is below {near:g}" in text
    assert f"{near:g} lies within the 95% interval" in text
    # without the plugin, pytest's own rewriting still shows the figure's repr
    without = [] if plugin_args() else ["-p", "no:bastion"]
    plain = pytester.runpytest(*without, "-k", "far_below")
    plain.assert_outcomes(failed=1)
    assert f"assert {figure!r} >= 0.95" in plain.stdout.str()
    assert "is below" not in plain.stdout.str()


def test_the_marker_is_registered_and_selects(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.robustness
        def test_slow_robustness():
            pass

        def test_quick():
            pass
        """
    )
    result = pytester.runpytest("--strict-markers", "-m", "not robustness", *plugin_args())
    result.assert_outcomes(passed=1, deselected=1)
    result = pytester.runpytest("--strict-markers", "-m", "robustness", *plugin_args())
    result.assert_outcomes(passed=1, deselected=1)
    markers = pytester.runpytest("--markers", *plugin_args())
    assert markers.ret == 0
    lines = [ln for ln in markers.outlines if ln.startswith("@pytest.mark.robustness:")]
    assert len(lines) == 1 and "-m robustness" in lines[0]


def test_the_fixture_is_the_function(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import bastion.testing

        def test_fixture(robustness):
            assert robustness is bastion.testing.robustness
        """
    )
    pytester.runpytest(*plugin_args()).assert_outcomes(passed=1)
    fixtures = pytester.runpytest("--fixtures", *plugin_args())
    assert "robustness" in fixtures.stdout.str()
    assert "measures" in fixtures.stdout.str()  # the fixture's docstring


def test_an_installed_entry_point_loads_the_plugin_once(tmp_path: Path) -> None:
    """As pip installs it: pytest finds the plugin through the pytest11 entry point, with no
    -p, and registers it once (beside an installed bastion's own entry point, if any)."""
    site = tmp_path / "site"
    info = site / "bastion_probe-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bastion-probe\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(f"[pytest11]\nbastion = {PLUGIN}\n")
    work = tmp_path / "suite"
    work.mkdir()
    (work / "test_marked.py").write_text(
        "import pytest\n\n@pytest.mark.robustness\ndef test_marked():\n    pass\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO / "src")])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--strict-markers", "-p", "no:cacheprovider", "-q"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert "already registered" not in proc.stdout + proc.stderr


def test_the_plugin_imports_neither_torch_nor_numpy() -> None:
    code = (
        "import sys, bastion.testing.plugin, bastion.testing; "
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_public_names() -> None:
    import bastion.testing

    assert set(bastion.testing.__all__) == {"Figure", "RobustnessResult", "robustness"}
    for name in bastion.testing.__all__:
        assert getattr(bastion.testing, name).__module__.startswith("bastion.testing.")


def test_pyproject_declares_the_entry_point() -> None:
    # read by hand: tomllib arrives with Python 3.11, and bastion supports 3.10
    text = (REPO / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.entry-points\.pytest11\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert section is not None, "pyproject.toml declares no pytest11 entry point"
    declared = dict(re.findall(r'^(\w+)\s*=\s*"([^"]+)"', section.group(1), re.M))
    assert declared == {"bastion": PLUGIN}
    plugin = import_module(declared["bastion"])
    assert callable(plugin.pytest_configure) and callable(plugin.pytest_assertrepr_compare)


def test_any_model_form_gives_the_same_figure(demo: Any, cnn: Any) -> None:
    """A target, a bare module with arrays, and a spec with a Dataset: one measurement."""
    target, data = demo
    forms = [
        robustness(cnn, data, 0.1, attacks=["fgsm"], samples=40),
        robustness(target.model, (data.x_test, data.y_test), 0.1, attacks="fgsm", samples=40),
        robustness("digits-cnn", data, 0.1, attacks=["fgsm"], samples=40),
    ]
    assert len({(float(r.robust_accuracy), r.robust_accuracy.count) for r in forms}) == 1
    r = forms[0]
    assert isinstance(r, RobustnessResult) and r.samples == 40 and r.attacks == ("fgsm",)
    assert r.robust_accuracy <= r.clean_accuracy
    assert r.interval == r.robust_accuracy.interval
    assert r.assessment is not None and r.assessment.family == "evasion"


def test_a_scikit_learn_classifier_is_measured(logreg: Any, demo: Any) -> None:
    _, data = demo
    r = robustness(
        logreg,
        (data.x_test.reshape(len(data.x_test), -1), data.y_test),
        0.2,
        attacks=["square"],
        samples=20,
        attack_params={"square": {"max_queries": 50}},
    )
    assert r.robust_accuracy.count is not None and r.robust_accuracy.count[1] == 20
    assert r.robust_accuracy < r.clean_accuracy


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: robustness("digits-cnn", eps=-1), ConfigError, "positive"),
        (lambda: robustness("digits-cnn", eps=[0.1, 0.2]), ConfigError, "one positive number"),
        (lambda: robustness("digits-cnn", epsilon=0.1), ConfigError, "unknown options epsilon"),
        (lambda: robustness(object(), ([[0.0]], [0])), ConfigError, "takes a model as"),
        (lambda: robustness("digits-cnn", {"x": 1}), ConfigError, "takes data as"),
        (lambda: robustness(object()), DataError, "needs data"),
    ],
)
def test_bad_calls_are_one_clear_error(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_a_figure_is_a_float_that_shows_its_interval() -> None:
    f = Figure(0.42, name="robust accuracy", interval=(0.33, 0.52), count=(42, 100),
               setting="linf eps=0.1")  # fmt: skip
    assert f == 0.42 and f < 0.6 and f + 0.08 == pytest.approx(0.5)
    assert repr(f) == "0.42 (95% CI 0.33-0.52, 42/100 inputs, linf eps=0.1)"
    assert str(f) == "0.42" and f"{f:.1%}" == "42.0%"
    copy = pickle.loads(pickle.dumps(f))
    assert repr(copy) == repr(f) and isinstance(copy, Figure)
