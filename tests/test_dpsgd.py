"""DP-SGD through Opacus: the epsilon asked for is the epsilon spent, and the model learns."""

from __future__ import annotations

import pytest
import torch

from bastion.core.errors import MissingExtraError
from bastion.data import load_dataset
from bastion.defences import create_defence


def test_dp_sgd_spends_at_most_its_epsilon_and_learns() -> None:
    data = load_dataset("digits")
    dp = create_defence("dp-sgd:epsilon=4,epochs=4,arch=mlp,seed=0")
    target = dp.fit(None, data)
    assert dp.epsilon_ <= 4.0 + 1e-6
    assert dp.noise_multiplier_ > 0
    assert dp.delta_ == pytest.approx(1 / (10 * len(data.x_train)))
    x, y = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    assert float((target.predict(x) == y).float().mean()) > 0.5  # chance is 0.1
    assert "dp-sgd" in target.name


def test_dp_sgd_names_its_extra_when_opacus_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import bastion.defences.privacy.dpsgd as mod

    def missing(name: str) -> None:
        raise MissingExtraError(
            f"this feature needs the optional package {name!r}: pip install 'bastion-ml[privacy]'"
        )

    monkeypatch.setattr(mod, "require", missing)
    with pytest.raises(MissingExtraError, match=r"bastion-ml\[privacy\]"):
        create_defence("dp-sgd").fit(None, load_dataset("digits"))
