"""``report.html``: a self-contained page people want to read (plots inline, no network)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from bastion.assess.scan import ScanResult
from bastion.catalog import get_mitigation, get_technique
from bastion.report.json import atomic_write, to_dict

__all__ = ["render_html", "write_html"]

_COLOURS = {"white-box": "#c0392b", "score-based": "#2874a6", "label-only": "#7d3c98"}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _robustness_plot(report: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = report["sweep"]
    eps = [0.0] + [p["epsilon"] for p in sweep]
    clean = report["clean_accuracy"]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    overall = [clean["value"]] + [p["robust_accuracy"] for p in sweep]
    lo = [clean["ci95"][0]] + [p["ci95"][0] for p in sweep]
    hi = [clean["ci95"][1]] + [p["ci95"][1] for p in sweep]
    ax.fill_between(eps, lo, hi, color="#444444", alpha=0.15, linewidth=0, label="95% interval")
    ax.plot(eps, overall, "o-", color="#222222", linewidth=2.2, label="worst case, all attacks")
    groups = sorted({g for p in sweep for g in p["by_access"]})
    if len(groups) > 1:
        for g in groups:
            acc = [clean["value"]] + [p["by_access"][g] for p in sweep]
            ax.plot(
                eps,
                acc,
                "s--",
                color=_COLOURS.get(g, "#888888"),
                linewidth=1.2,
                markersize=4,
                label=f"{g} attacks",
            )
    ax.set_xlabel(f"epsilon ({report['threat']['norm']})")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Accuracy under attack")
    return _png(fig)


def _examples_plot(result: ScanResult, eps: float) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [e for e in result.examples if e.epsilon == eps]
    if not chosen or chosen[0].clean.ndim < 2:
        return None
    names = result.class_names
    lo, hi = result.target["bounds"]

    def show(ax: Any, arr: np.ndarray, title: str, colour: str) -> None:
        img = (arr - lo) / (hi - lo)
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
        ax.imshow(
            np.clip(img, 0, 1),
            cmap="gray" if img.ndim == 2 else None,
            vmin=0,
            vmax=1,
            interpolation="nearest",
        )
        ax.set_title(title, fontsize=8, color=colour)
        ax.axis("off")

    def label(i: int) -> str:
        return names[i] if i < len(names) else str(i)

    fig, axes = plt.subplots(2, len(chosen), figsize=(1.3 * len(chosen), 3.0), squeeze=False)
    for col, ex in enumerate(chosen):
        ok = ex.clean_prediction == ex.label
        show(
            axes[0][col],
            ex.clean,
            f"clean: {label(ex.clean_prediction)}",
            "#1e8449" if ok else "#c0392b",
        )
        fooled = ex.adversarial_prediction != ex.label
        show(
            axes[1][col],
            ex.adversarial,
            f"attacked: {label(ex.adversarial_prediction)}",
            "#c0392b" if fooled else "#1e8449",
        )
    fig.suptitle(
        f"Clean inputs (top) and their adversarial versions at eps={eps:g} (bottom)", fontsize=9
    )
    return _png(fig)


def render_html(
    result: ScanResult, report: dict[str, Any] | None = None, command: str | None = None
) -> str:
    """The HTML report for ``result`` (``report`` is its JSON form, if already made)."""
    report = report or to_dict(result)
    env = Environment(
        loader=PackageLoader("bastion.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    eps_values = [p["epsilon"] for p in report["sweep"]]
    # show examples where the attacks bite but not everything is gone: the middle of the sweep
    show_eps = eps_values[len(eps_values) // 2]
    techniques = {t: get_technique(t).name for f in result.findings for t in f.techniques}
    mitigations = {m: get_mitigation(m) for f in result.findings for m in f.mitigations}
    return env.get_template("report.html.j2").render(
        r=report,
        robustness_png=_robustness_plot(report),
        examples_png=_examples_plot(result, show_eps),
        examples_eps=show_eps,
        tabular_examples=[
            e for e in report["examples"] if e["epsilon"] == show_eps and e.get("largest_changes")
        ],
        technique_names=techniques,
        mitigations=mitigations,
        command=command,
    )


def write_html(
    result: ScanResult, path: Path, report: dict[str, Any] | None = None, command: str | None = None
) -> None:
    atomic_write(path, render_html(result, report, command))
