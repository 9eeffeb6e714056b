"""scikit-learn models: skops files (safe types only, unless trusted) and pickles (trusted only).

skops loads without running code only the types on its trusted list: scikit-learn estimators
and the numpy and scipy types they hold. Other types found in a file (gradient boosting's loss
objects, random forests' tree arrays and some numpy dtypes, depending on the skops version,
and any type of your own) could run code when loaded, so they need ``--trust``; the error
names them so you can check that they are what you expect.
"""

from __future__ import annotations

from typing import Any

from bastion.core.errors import TargetError, UntrustedFileError
from bastion.core.targets.base import Target
from bastion.core.threat import OutputKind
from bastion.loaders.base import TargetSpec, output_kind, register_loader, require_trust


def _target(spec: TargetSpec, estimator: Any) -> Target:
    from bastion.core.targets.sklearn import SklearnTarget

    assert spec.path is not None
    kind = output_kind(spec.output_kind, OutputKind.PROBABILITIES) if spec.output_kind else None
    return SklearnTarget(estimator, output_kind=kind, name=spec.path.name, **spec.common())


@register_loader("skops", suffixes=(".skops",))
def load_skops(spec: TargetSpec) -> Target:
    """A scikit-learn model saved with skops: only skops' trusted types load without --trust."""
    import skops.io as sio

    assert spec.path is not None
    try:
        untrusted = sio.get_untrusted_types(file=spec.path)
    except Exception as exc:  # a damaged or foreign file
        raise TargetError(f"{spec.path} is not a skops file: {exc}") from exc
    if untrusted and not spec.trust:
        shown = ", ".join(untrusted[:5]) + (" ..." if len(untrusted) > 5 else "")
        raise UntrustedFileError(
            f"{spec.path} holds types outside skops' trusted list ({shown}); skops refuses "
            "them by default because loading an unknown type could run code. Pass --trust if "
            "you made this file"
        )
    return _target(spec, sio.load(spec.path, trusted=untrusted or None))


@register_loader("pickle", suffixes=(".joblib", ".pkl", ".pickle"), carries_code=True)
def load_pickle(spec: TargetSpec) -> Target:
    """A pickled scikit-learn model (joblib or pickle): only with --trust."""
    require_trust(spec, "a pickle", alternative="save the model with skops instead")
    import joblib

    try:
        estimator = joblib.load(spec.path)
    except Exception as exc:  # unpickling fails in many ways
        raise TargetError(f"cannot load {spec.path}: {exc}") from exc
    return _target(spec, estimator)
