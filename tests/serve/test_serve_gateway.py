"""The gateway on a real loopback server: access control, limits, validation, hardening, audit."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from bastion.serve.logs import JsonFormatter
from bastion.serve.store import AUDIT

from .conftest import Client

Serve = Callable[..., Client]

NO_LIMITS = {"limits": {"rate": None, "budget": None}}


def batch(n: int = 2, value: float = 0.5) -> list[Any]:
    return np.full((n, 1, 8, 8), value).tolist()


# ---------------------------------------------------------------------- access control
class TestAccess:
    def test_no_key_is_refused_with_a_bearer_challenge(self, serve: Serve) -> None:
        c = serve(NO_LIMITS)
        r = c.predict(batch(), key=None)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert "API key is required" in r.json()["detail"]

    @pytest.mark.parametrize(
        "header",
        ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-key", "bst_abc", "Token x"],
    )
    def test_malformed_authorization_is_refused(self, serve: Serve, header: str) -> None:
        c = serve(NO_LIMITS)
        r = c.http.post("/predict", json={"inputs": batch()}, headers={"Authorization": header})
        assert r.status_code == 401

    def test_wrong_secret_and_unknown_id_get_the_same_refusal(self, serve: Serve) -> None:
        c = serve(NO_LIMITS)
        prefix, key_id, secret = c.key[:3], c.key[4:16], c.key[17:]
        wrong_secret = f"{prefix}_{key_id}_{'A' * len(secret)}"
        unknown_id = f"{prefix}_{'0' * 12}_{secret}"
        answers = [c.predict(batch(), key=k) for k in (wrong_secret, unknown_id)]
        assert [a.status_code for a in answers] == [401, 401]
        assert answers[0].json() == answers[1].json() == {"detail": "the API key is not valid"}
        assert c.predict(batch()).status_code == 200

    def test_revoked_key_is_refused(self, serve: Serve) -> None:
        c = serve(NO_LIMITS)
        assert c.predict(batch()).status_code == 200
        c.gateway.keys.revoke("alice")
        r = c.predict(batch())
        assert r.status_code == 401

    def test_rotated_key_replaces_the_old_one(self, serve: Serve) -> None:
        c = serve(NO_LIMITS)
        new, secret = c.gateway.keys.rotate("alice")
        assert c.predict(batch()).status_code == 401
        assert c.predict(batch(), key=secret).status_code == 200
        old = [k for k in c.gateway.keys.list() if k.name == "alice" and not k.active]
        assert old[0].replaced_by == new.key_id

    def test_a_key_without_the_scope_is_refused(self, serve: Serve) -> None:
        c = serve(NO_LIMITS)
        assert c.predict(batch(), key=c.admin).status_code == 403
        assert (
            c.http.get("/metrics", headers={"Authorization": f"Bearer {c.key}"}).status_code == 403
        )
        r = c.http.get("/admin/keys", headers={"Authorization": f"Bearer {c.key}"})
        assert r.status_code == 403

    def test_admin_surface_needs_the_admin_scope_and_shows_no_secret(self, serve: Serve) -> None:
        c = serve(NO_LIMITS)
        assert c.http.get("/admin/keys").status_code == 401
        assert c.http.get("/metrics").status_code == 401
        r = c.http.get("/admin/keys", headers={"Authorization": f"Bearer {c.admin}"})
        assert r.status_code == 200
        assert {k["name"] for k in r.json()["keys"]} == {"alice", "root"}
        assert c.key not in r.text and c.key[17:] not in r.text
        assert "digest" not in r.text and "salt" not in r.text

    def test_health_readiness_and_openapi_are_public(self, serve: Serve) -> None:
        c = serve(NO_LIMITS)
        assert c.http.get("/healthz").json() == {"status": "ok"}
        ready = c.http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": True, "limits": True, "serving": True}
        spec = c.http.get("/openapi.json").json()
        assert "/predict" in spec["paths"]
        body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["required"] == ["inputs"]
        # no interactive docs: they would load their scripts from a CDN
        assert c.http.get("/docs").status_code == 404

    def test_the_database_holds_no_secret(self, serve: Serve, tmp_path: Any) -> None:
        c = serve(NO_LIMITS)
        c.gateway.audit.close()
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("gateway*.db*"))
        assert c.key.encode() not in raw and c.key[17:].encode() not in raw
        assert c.key[4:16].encode() in raw  # the id is what finds the row


# ---------------------------------------------------------------------- limits
class TestLimits:
    def test_rate_limit_holds_exactly_with_retry_after(self, serve: Serve) -> None:
        c = serve({"limits": {"rate": "5/minute", "budget": None}})
        codes = [c.predict(batch(1)).status_code for _ in range(7)]
        assert codes == [200] * 5 + [429] * 2
        r = c.predict(batch(1))
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "rate limit" in r.json()["detail"]

    def test_rate_limit_is_per_key(self, serve: Serve) -> None:
        c = serve({"limits": {"rate": "2/minute", "budget": None}})
        _, other = c.gateway.keys.create("bob")
        assert [c.predict(batch(1)).status_code for _ in range(3)] == [200, 200, 429]
        assert c.predict(batch(1), key=other).status_code == 200

    def test_budget_counts_inputs_exactly_and_a_refused_batch_spends_nothing(
        self, serve: Serve
    ) -> None:
        c = serve({"limits": {"rate": None, "budget": "25/hour"}})
        codes = [c.predict(batch(n)).status_code for n in (10, 10, 10, 5, 1)]
        # 10 + 10 = 20; 10 more would make 30 > 25 (refused, nothing spent); 5 makes 25; 1 is over
        assert codes == [200, 200, 429, 200, 429]
        r = c.predict(batch(1))
        assert "query budget" in r.json()["detail"]
        assert 3000 <= int(r.headers["retry-after"]) <= 3600
        answered = c.gateway.audit.rows(key_id=c.gateway.keys.find("alice").key_id)
        assert sum(row["n_inputs"] for row in answered if row["status"] == 200) == 25


# ---------------------------------------------------------------------- validation
BAD_BODIES: list[tuple[str, bytes, int, str]] = [
    ("not json", b"{inputs: [1]}", 400, "not valid JSON"),
    ("not utf-8", b'{"inputs": "\xff"}', 400, "UTF-8"),
    ("a list", b"[1, 2]", 400, "JSON object"),
    ("missing inputs", b'{"x": []}', 422, "unexpected field"),
    ("extra field", json.dumps({"inputs": batch(1), "admin": True}).encode(), 422, "unexpected"),
    ("inputs not a list", b'{"inputs": 3}', 422, "must be a list"),
    ("empty batch", b'{"inputs": []}', 422, "empty"),
    ("wrong shape", json.dumps({"inputs": np.zeros((2, 64)).tolist()}).encode(), 422, "shape"),
    ("ragged", json.dumps({"inputs": [batch(1)[0], [[0.5]]]}).encode(), 422, "same shape"),
    ("NaN", b'{"inputs": [NaN]}', 422, "NaN"),
    ("Infinity", b'{"inputs": [[Infinity]]}', 422, "Infinity"),
    (
        "overflow",
        json.dumps({"inputs": batch(1)}).replace("0.5", "1e400", 1).encode(),
        422,
        "finite",
    ),
    (
        "float32 overflow",
        json.dumps({"inputs": batch(1)}).replace("0.5", "1e39", 1).encode(),
        422,
        "finite",
    ),
    ("out of bounds", json.dumps({"inputs": batch(1, 1.5)}).encode(), 422, "allowed is [0, 1]"),
    ("strings", json.dumps({"inputs": [["0.5"] * 64]}).encode(), 422, "numbers"),
    (
        "booleans",
        json.dumps({"inputs": batch(1)}).replace("0.5", "true", 1).encode(),
        422,
        "numbers only",
    ),
    (
        "null",
        json.dumps({"inputs": batch(1)}).replace("0.5", "null", 1).encode(),
        422,
        "numbers only",
    ),
    ("deep nesting", b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nest"),
]


class TestValidation:
    def test_bad_bodies_get_a_clear_4xx(self, serve: Serve) -> None:
        # one server for the whole table: a server per case would cost more than the cases
        c = serve({**NO_LIMITS, "inputs": {"max_body_bytes": 1_000_000}})
        for case, body, status, message in BAD_BODIES:
            r = c.predict(content=body, headers={"Content-Type": "application/json"})
            assert (case, r.status_code) == (case, status), r.text
            assert message in r.json()["detail"], (case, r.text)
        assert c.gateway.audit.count(decision="invalid") == len(BAD_BODIES)
        assert c.gateway.audit.count(status=200) == 0

    def test_batch_over_the_limit_is_413(self, serve: Serve) -> None:
        c = serve({**NO_LIMITS, "inputs": {"max_batch": 4}})
        assert c.predict(batch(4)).status_code == 200
        r = c.predict(batch(5))
        assert r.status_code == 413
        assert "limit is 4" in r.json()["detail"]

    def test_body_over_the_limit_is_413_declared_or_streamed(self, serve: Serve) -> None:
        c = serve({**NO_LIMITS, "inputs": {"max_body_bytes": 2000}})
        big = json.dumps({"inputs": batch(8)}).encode()
        assert len(big) > 2000
        assert c.predict(content=big).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the gateway counts as it reads
            for i in range(0, len(big), 500):
                yield big[i : i + 500]

        r = c.predict(content=chunks())
        assert r.status_code == 413
        assert "2000 bytes" in r.json()["detail"]

    def test_an_oversized_body_without_a_key_is_still_401(self, serve: Serve) -> None:
        c = serve({**NO_LIMITS, "inputs": {"max_body_bytes": 100}})
        assert c.predict(batch(8), key=None).status_code == 401

    def test_policy_bounds_and_shape_override_the_targets(self, serve: Serve) -> None:
        c = serve({**NO_LIMITS, "inputs": {"bounds": [0.0, 0.5]}})
        assert c.predict(batch(1, 0.5)).status_code == 200
        assert c.predict(batch(1, 0.6)).status_code == 422


# ---------------------------------------------------------------------- output hardening
class TestOutputs:
    def test_plain_outputs_are_the_models_logits(self, serve: Serve) -> None:
        c = serve(NO_LIMITS)
        x = np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)
        r = c.predict(x.tolist())
        import torch

        expected = c.gateway.target(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(np.array(r.json()["outputs"]), expected, rtol=1e-5, atol=1e-5)

    def test_rounded_outputs(self, serve: Serve) -> None:
        c = serve({**NO_LIMITS, "output": ["round:decimals=2"]})
        out = np.array(c.predict(batch(3, 0.3)).json()["outputs"])
        assert out.shape == (3, 10)
        np.testing.assert_array_equal(out, np.round(out, 2))
        assert abs(out.sum(axis=1) - 1).max() < 0.06  # probabilities, not logits

    def test_topk_then_labels_only(self, serve: Serve) -> None:
        c = serve({**NO_LIMITS, "output": ["topk:k=2"]})
        out = np.array(c.predict(batch(3, 0.3)).json()["outputs"])
        assert ((out > 0).sum(axis=1) <= 2).all()
        c2 = serve({**NO_LIMITS, "output": ["labels"]})
        labels = c2.predict(batch(3, 0.3)).json()["outputs"]
        assert all(isinstance(v, int) and 0 <= v < 10 for v in labels)
        assert labels == out.argmax(axis=1).tolist()


# ---------------------------------------------------------------------- audit and request ids
class TestAudit:
    def test_every_request_is_in_the_audit_log_under_its_request_id(self, serve: Serve) -> None:
        c = serve({"limits": {"rate": "6/minute", "budget": None}})
        x = np.random.default_rng(1).random((2, 1, 8, 8)).astype(np.float32)
        sent = [
            c.predict(x.tolist()),
            c.predict(x.tolist(), key=None),
            c.predict(content=b"nope"),
            c.predict(x.tolist(), key=c.admin),
            *[c.predict(batch(1)) for _ in range(6)],  # 4 more allowed, then 2 over the rate
        ]
        rows = {row["request_id"]: row for row in c.gateway.audit.rows()}
        assert len(rows) == len(sent)
        for r in sent:
            row = rows[r.headers["x-request-id"]]
            assert row["status"] == r.status_code
        decisions = [rows[r.headers["x-request-id"]]["decision"] for r in sent]
        assert (
            decisions
            == ["allowed", "no-key", "invalid", "no-scope"] + ["allowed"] * 4 + ["rate-limited"] * 2
        )
        first = rows[sent[0].headers["x-request-id"]]
        digest = hashlib.sha256(b"<f4[2, 1, 8, 8]" + x.tobytes()).hexdigest()
        assert first["input_digest"] == digest
        assert first["n_inputs"] == 2
        assert first["key_id"] == c.gateway.keys.find("alice").key_id

    def test_fails_closed_when_the_audit_log_cannot_be_written_and_recovers(
        self, serve: Serve
    ) -> None:
        c = serve(NO_LIMITS)
        assert c.predict(batch(1)).status_code == 200
        with c.gateway.engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {AUDIT.name} RENAME TO audit_away"))
        r = c.predict(batch(1))
        assert r.status_code == 503
        assert "outputs" not in r.json()
        assert r.headers["retry-after"] == "1"
        with c.gateway.engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE audit_away RENAME TO {AUDIT.name}"))
        assert c.predict(batch(1)).status_code == 200
        assert [row["status"] for row in c.gateway.audit.rows()] == [200, 200]

    def test_json_log_lines_carry_the_request_id(
        self, serve: Serve, caplog: pytest.LogCaptureFixture
    ) -> None:
        c = serve(NO_LIMITS)
        with caplog.at_level(logging.INFO, logger="bastion.serve"):
            r = c.predict(batch(1))
        lines = [json.loads(JsonFormatter().format(rec)) for rec in caplog.records]
        mine = [line for line in lines if line.get("request_id") == r.headers["x-request-id"]]
        assert len(mine) == 1
        assert mine[0]["event"] == "predict" and mine[0]["status"] == 200
        assert c.key[17:] not in caplog.text

    def test_metrics_count_requests_by_decision(self, serve: Serve) -> None:
        c = serve(NO_LIMITS)
        c.predict(batch(3))
        c.predict(batch(1), key=None)
        text = c.http.get("/metrics", headers={"Authorization": f"Bearer {c.admin}"}).text
        assert (
            'bastion_requests_total{decision="allowed",endpoint="predict",status="200"} 1.0' in text
        )
        assert (
            'bastion_requests_total{decision="no-key",endpoint="predict",status="401"} 1.0' in text
        )
        assert "bastion_inputs_answered_total 3.0" in text


def test_kill_switch_serves_503_and_readiness_says_so(serve: Serve) -> None:
    c = serve(NO_LIMITS)
    c.gateway.kill_switch = True
    r = c.predict(batch(1))
    assert r.status_code == 503 and "switched off" in r.json()["detail"]
    assert c.http.get("/readyz").json()["checks"]["serving"] is False
    c.gateway.kill_switch = False
    assert c.predict(batch(1)).status_code == 200
    assert [row["decision"] for row in c.gateway.audit.rows()] == ["kill-switch", "allowed"]
