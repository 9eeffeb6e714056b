"""Detectors in the gateway: extraction clients throttled, benign clients left alone, the
defences layer's detectors plugged in by name, and bad detector settings refused on load."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

from bastion.core.errors import ConfigError
from bastion.core.registry import DEFENCES, register_defence
from bastion.data import Dataset
from bastion.defences import Detector
from bastion.serve import BackgroundServer, load_policy
from bastion.serve.detection import Prada, QueryStats

from .conftest import Client, MakeGateway

THROTTLE_BOTH = {
    "limits": {"rate": None, "budget": None},
    "detectors": [
        {"detector": "prada", "action": "throttle"},
        {"detector": "query-stats", "action": "throttle"},
    ],
}


@pytest.fixture
def reference(demo: tuple[Any, Dataset]) -> np.ndarray:
    _, data = demo
    rng = np.random.default_rng(0)
    return data.x_train[rng.choice(len(data.x_train), 500, replace=False)]


@pytest.fixture
def serve_ref(
    make_gateway: MakeGateway, reference: np.ndarray
) -> Iterator[Callable[[dict[str, Any]], Client]]:
    servers: list[BackgroundServer] = []

    def start(policy: dict[str, Any]) -> Client:
        server = BackgroundServer(make_gateway(policy, reference=reference)).start()
        servers.append(server)
        return Client(server)

    yield start
    for server in servers:
        server.stop()


def _send(c: Client, key: str, x: np.ndarray, batch: int = 10) -> int | None:
    """Inputs answered before the first 429 (None: never refused)."""
    answered = 0
    for i in range(0, len(x), batch):
        r = c.predict(x[i : i + batch].tolist(), key=key)
        if r.status_code == 429:
            assert "quarantined" in r.json()["detail"]
            return answered
        assert r.status_code == 200, r.text
        answered += len(x[i : i + batch])
    return None


def test_a_knockoff_client_is_throttled_within_1000_queries_and_benign_ones_are_not(
    serve_ref: Callable[[dict[str, Any]], Client], demo: tuple[Any, Dataset]
) -> None:
    _, data = demo
    c = serve_ref(THROTTLE_BOTH)
    rng = np.random.default_rng(1)
    benign = []
    for i in range(20):
        _, key = c.gateway.keys.create(f"benign-{i}")
        picks = data.x_test[rng.choice(len(data.x_test), int(rng.integers(3, 21)), replace=False)]
        assert _send(c, key, picks, batch=int(rng.integers(1, 6))) is None
        benign.append(c.gateway.keys.find(f"benign-{i}").key_id)
    # one benign client sends the whole test set: past every detector's minimum
    _, heavy = c.gateway.keys.create("benign-heavy")
    assert _send(c, heavy, data.x_test, batch=40) is None
    benign.append(c.gateway.keys.find("benign-heavy").key_id)

    _, thief = c.gateway.keys.create("thief")
    queries = rng.random((1000, 1, 8, 8)).astype(np.float32)  # covering the input box
    throttled_after = _send(c, thief, queries)
    assert throttled_after is not None and throttled_after <= 1000

    assert all(not c.gateway.incidents.list(key_id=k) for k in benign)
    thief_id = c.gateway.keys.find("thief").key_id
    (incident,) = c.gateway.incidents.list(key_id=thief_id)
    assert "AML.T0024.002" in incident.techniques
    assert incident.playbook == "extraction"
    timeline = c.gateway.incidents.get(incident.id).timeline
    assert [e.action for e in timeline] == ["alert", "quarantine"]
    assert timeline[1].actor == "gateway"
    # the verdicts are in the audit rows; the quarantined requests are audited as such
    rows = c.gateway.audit.rows(key_id=thief_id)
    assert any("outside-reference" in r["verdicts"].get("query-stats", []) for r in rows)
    assert rows[-1]["decision"] == "quarantined"
    metrics = c.gateway.metrics.render().decode()
    assert (
        'bastion_detector_alerts_total{action="throttle",check="outside-reference",'
        'detector="query-stats"} 1.0' in metrics
    )


def _labels(target: Any, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = target(torch.from_numpy(x)).argmax(1).numpy()
    return out


def test_prada_flags_synthetic_walks_not_natural_digits(
    demo: tuple[Any, Dataset],
) -> None:
    target, data = demo
    rng = np.random.default_rng(0)
    natural = Prada(min_queries=50)
    for i in range(0, len(data.x_test), 10):
        part = data.x_test[i : i + 10]
        assert natural.observe("k", part.reshape(len(part), -1), _labels(target, part)) == []
    assert natural.state()["k"]["shapiro_w"] > 0.9

    walk = Prada(min_queries=50)
    current = data.x_test[:10].copy()
    fired_at = None
    for step in range(50):
        current = np.clip(current + 0.1 * np.sign(rng.standard_normal(current.shape)), 0, 1)
        part = current.astype(np.float32)
        if walk.observe("k", part.reshape(10, -1), _labels(target, part)):
            fired_at = (step + 1) * 10
            break
    assert fired_at is not None and fired_at <= 300
    assert walk.state()["k"]["shapiro_w"] < 0.9


def test_query_stats_near_duplicates_and_volume(reference: np.ndarray) -> None:
    stats = QueryStats(min_queries=20, max_per_minute=30).fit(
        reference.reshape(len(reference), -1), (0.0, 1.0)
    )
    base = reference[:1].reshape(1, -1)
    rng = np.random.default_rng(0)
    found: list[str] = []
    for _ in range(4):  # a search around one input: tiny steps
        x = np.clip(base + rng.normal(0, 1e-3, (10, base.shape[1])), 0, 1).astype(np.float32)
        found += [f.check for f in stats.observe("k", x, np.zeros(10, dtype=int))]
    assert "near-duplicates" in found and "volume" in found
    assert "outside-reference" not in found
    assert stats.state()["k"]["near_duplicates"] > 0.9


class Brightness(Detector):
    """Scores an input by its mean value (a stand-in detector for the plug-in test)."""

    def __init__(self, *, power: float = 1.0) -> None:
        self.power = power

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1).mean(dim=1) ** self.power


@pytest.fixture
def brightness() -> Iterator[str]:
    """A detector registered for this test only, so registry-wide tests never see it."""
    register_defence("test-brightness", family="evasion", defence_kind="detector")(Brightness)
    try:
        yield "test-brightness"
    finally:
        DEFENCES.unregister("test-brightness")


def test_a_registered_detector_blocks_by_name(
    serve_ref: Callable[[dict[str, Any]], Client], brightness: str
) -> None:
    c = serve_ref(
        {
            "limits": {"rate": None, "budget": None},
            "detectors": [{"detector": f"{brightness}:power=1", "action": "block", "fpr": 0.01}],
        }
    )
    ok = c.predict(np.full((2, 1, 8, 8), 0.2).tolist())
    assert ok.status_code == 200
    bright = c.predict(np.ones((2, 1, 8, 8)).tolist())
    assert bright.status_code == 403 and "input detector" in bright.json()["detail"]
    rows = c.gateway.audit.rows()
    assert rows[-1]["decision"] == "blocked"
    assert rows[-1]["verdicts"][brightness] == {"flagged": 2}
    assert rows[0]["verdicts"][brightness] == {"flagged": 0}
    (incident,) = c.gateway.incidents.list()
    assert incident.signals == ("detector-flagged-inputs",)
    # a refused batch spends no budget and the next clean one passes: the key is not blocked
    assert c.predict(np.full((1, 1, 8, 8), 0.2).tolist()).status_code == 200


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"detector": "nonesuch"}, "nonesuch"),
        ({"detector": "squeeze:bits=4"}, "not a detector"),
        ({"detector": "prada:threshold=2"}, "threshold"),
        ({"detector": "prada:nope=1"}, "nope"),
        ({"detector": "prada", "action": "explode"}, "action"),
    ],
)
def test_bad_detector_settings_are_refused_on_load(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_policy({"detectors": [spec]})


def test_detectors_needing_a_reference_say_so(make_gateway: MakeGateway) -> None:
    with pytest.raises(ConfigError, match="reference sample"):
        make_gateway({"detectors": [{"detector": "query-stats"}]})


# ---------------------------------------------------------------------- STRIP against a trojan
@pytest.fixture(scope="module")
def trojan(demo: tuple[Any, Dataset]) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """A CNN trojaned by BadNets (3x3 patch, 10% of the training set, to class 0): the model,
    the gateway's reference sample, triggered and clean test inputs."""
    from bastion.assess.poisoning import recipe_fit
    from bastion.attacks.poisoning import BadNets

    _, data = demo
    attack = BadNets(rate=0.1, target_class=0, size=3)
    model = recipe_fit("cnn", epochs=6)(attack.poison(data, seed=0).dataset(data), 0)
    triggered, _ = attack.test_inputs(data.x_test, data.y_test, data)
    rng = np.random.default_rng(0)
    reference = data.x_train[rng.choice(len(data.x_train), 500, replace=False)]
    assert (model(torch.from_numpy(triggered)).argmax(1) == 0).float().mean() > 0.9
    return model, reference, triggered[:40], data.x_test[:80]


@pytest.fixture
def trojan_gateway(
    trojan: tuple[Any, np.ndarray, np.ndarray, np.ndarray], tmp_path: Any
) -> Iterator[Callable[..., Any]]:
    """Gateways serving the trojaned model under a policy; closed after the test."""
    from bastion.serve import Gateway

    made: list[Any] = []

    def make(policy: dict[str, Any], **kwargs: Any) -> Any:
        raw = {"database": f"sqlite:///{tmp_path / f'g{len(made)}.db'}", **policy}
        made.append(Gateway(trojan[0], load_policy(raw), **kwargs))
        return made[-1]

    yield make
    for gateway in made:
        gateway.close()


def _blocked(gateway: Any, key: str, x: np.ndarray) -> int:
    """How many of ``x``, one per request, the gateway refused with a 403."""
    import json

    refused = 0
    for row in x:
        answer = gateway.predict(f"Bearer {key}", json.dumps({"inputs": [row.tolist()]}).encode())
        assert answer.status in (200, 403), answer.body
        refused += answer.status == 403
    return refused


def test_strip_in_the_policy_blocks_triggered_inputs_and_passes_clean_ones(
    trojan_gateway: Callable[..., Any], trojan: tuple[Any, np.ndarray, np.ndarray, np.ndarray]
) -> None:
    _, reference, triggered, clean = trojan
    gateway = trojan_gateway(
        {
            "limits": {"rate": None, "budget": None},
            "output": ["labels"],  # callers get labels; STRIP still scores the model itself
            "detectors": [
                {"detector": "strip", "params": {"overlays": 20}, "action": "block", "fpr": 0.02}
            ],
        },
        reference=reference,
    )
    ((_, strip),) = gateway.detection.input_detectors
    assert strip.target_ is gateway.target and len(strip.pool_) == 250
    _, key = gateway.keys.create("tester")
    # measured on this seeded trojan: 32 of the 40 triggered inputs refused, 3 of the 80 clean
    assert _blocked(gateway, key, triggered) >= 0.7 * len(triggered)
    assert _blocked(gateway, key, clean) <= 0.1 * len(clean)
    rows = gateway.audit.rows()
    blocked = [r for r in rows if r["decision"] == "blocked"]
    assert blocked and all(r["verdicts"]["strip"] == {"flagged": 1} for r in blocked)
    assert all(r["verdicts"]["strip"] == {"flagged": 0} for r in rows if r["status"] == 200)
    (incident,) = gateway.incidents.list()
    assert "AML.T0018" in incident.techniques


def test_a_detector_calibrates_on_a_file_and_flags_without_refusing(
    trojan_gateway: Callable[..., Any],
    trojan: tuple[Any, np.ndarray, np.ndarray, np.ndarray],
    tmp_path: Any,
) -> None:
    _, reference, triggered, _ = trojan
    np.save(tmp_path / "clean.npy", reference[:200])
    gateway = trojan_gateway(
        {
            "limits": {"rate": None, "budget": None},
            "detectors": [
                {
                    "detector": "strip:overlays=10",
                    "action": "flag",
                    "calibration": str(tmp_path / "clean.npy"),
                }
            ],
        }
    )  # no reference sample: the file is the calibration data
    ((_, strip),) = gateway.detection.input_detectors
    assert len(strip.pool_) == 100
    _, key = gateway.keys.create("tester")
    assert _blocked(gateway, key, triggered[:10]) == 0  # flag answers, and opens an incident
    flagged = [r["verdicts"]["strip"]["flagged"] for r in gateway.audit.rows()]
    assert len(flagged) == 10 and sum(flagged) >= 1
    (incident,) = gateway.incidents.list()  # one per key and check, however many flags
    assert incident.detector == "strip"


@pytest.mark.parametrize(
    ("detector", "message"),
    [
        ({"detector": "strip:overlays=5", "params": {"overlays": 3}}, "both"),
        ({"detector": "strip", "params": {"overlays": "many"}}, "overlays"),
        ({"detector": "neural-cleanse"}, "inspects a model"),
    ],
)
def test_bad_defence_detector_settings_are_refused_on_load(
    detector: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_policy({"detectors": [detector]})


def test_bad_calibration_files_are_one_line_errors(
    make_gateway: MakeGateway, trojan: tuple[Any, np.ndarray, np.ndarray, np.ndarray], tmp_path: Any
) -> None:
    _, reference, _, _ = trojan
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, {"b": 2}], dtype=object))
    np.save(tmp_path / "shape.npy", reference[:10, :, :4])
    np.savez(tmp_path / "noname.npz", reference[:10])
    cases = {
        "missing.npy": "not found",
        "objects.npy": "cannot read",  # never unpickled
        "shape.npy": "shape",
        "noname.npz": "'x'",
    }
    for name, message in cases.items():
        policy = {"detectors": [{"detector": "strip", "calibration": str(tmp_path / name)}]}
        with pytest.raises(ConfigError, match=message):
            make_gateway(policy)


class Unsure(Detector):
    """Scores an input by how unsure the model is (the shape of squeeze-detector: its ``fit``
    takes the served model only)."""

    def fit(self, target: Any) -> Unsure:
        self.target_ = target
        return self

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return -self.target_(x).softmax(1).max(dim=1).values


class Greedy(Unsure):
    def fit(self, target: Any, x_pool: Any, x_more: Any) -> Greedy:  # type: ignore[override]
        return self


@pytest.fixture
def model_detectors() -> Iterator[tuple[str, str]]:
    register_defence("test-unsure", family="evasion", defence_kind="detector")(Unsure)
    register_defence("test-greedy", family="evasion", defence_kind="detector")(Greedy)
    try:
        yield "test-unsure", "test-greedy"
    finally:
        DEFENCES.unregister("test-unsure")
        DEFENCES.unregister("test-greedy")


def test_a_detector_that_fits_on_the_model_gets_the_served_one(
    make_gateway: MakeGateway, reference: np.ndarray, model_detectors: tuple[str, str]
) -> None:
    unsure, greedy = model_detectors
    gateway = make_gateway(
        {
            "output": ["labels"],
            "detectors": [{"detector": unsure, "action": "log", "fpr": 0.05}],
        },
        reference=reference,
    )
    ((_, det),) = gateway.detection.input_detectors
    assert det.target_ is gateway.target  # the model itself, not the label-only answers
    # the whole reference calibrates (no pool taken): 5% of it over the threshold
    flagged = det.detect(torch.from_numpy(reference)).float().mean().item()
    assert 0.02 <= flagged <= 0.06
    with pytest.raises(ConfigError, match=r"fit\(target\) or fit\(target, x_pool\)"):
        make_gateway({"detectors": [{"detector": greedy}]}, reference=reference)


def test_the_squeeze_detector_in_the_policy_blocks_adversarial_inputs(
    make_gateway: MakeGateway, reference: np.ndarray, demo: tuple[Any, Dataset]
) -> None:
    from bastion.attacks.evasion.pgd import PGD

    target, data = demo
    gateway = make_gateway(
        {
            "limits": {"rate": None, "budget": None},
            "detectors": [
                {
                    "detector": "squeeze-detector",
                    # bit depth only: a median window moves 8x8 digits as much as an attack
                    "params": {"bits": 4, "median": 0},
                    "action": "block",
                    "fpr": 0.05,
                }
            ],
        },
        reference=reference,
    )
    ((_, det),) = gateway.detection.input_detectors
    assert det.target_ is gateway.target
    x, y = torch.from_numpy(data.x_test[:60]), torch.from_numpy(data.y_test[:60])
    result = PGD(steps=20).run(target, x, y, eps=0.1)
    fooled = result.x_adv[result.success].numpy()
    assert len(fooled) >= 15
    _, key = gateway.keys.create("tester")
    # measured: every PGD example at eps 0.1 flagged, about 5% of clean inputs
    assert _blocked(gateway, key, fooled) >= 0.8 * len(fooled)
    assert _blocked(gateway, key, data.x_test[60:160]) <= 0.12 * 100
