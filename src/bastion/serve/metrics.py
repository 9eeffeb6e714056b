"""Prometheus metrics of one gateway, in a registry of its own (two gateways in one process,
as in the tests, never mix their counts)."""

from __future__ import annotations

from bastion._extras import require

require("prometheus_client")

from prometheus_client import (  # noqa: E402
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST  # noqa: E402

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]


class GatewayMetrics:
    """The gateway's counters: requests by decision, inputs answered, latency, kill switch."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bastion_requests",
            "Requests by endpoint, HTTP status and decision.",
            ("endpoint", "status", "decision"),
            registry=self.registry,
        )
        self.inputs = Counter(
            "bastion_inputs_answered", "Inputs the model answered.", registry=self.registry
        )
        self.latency = Histogram(
            "bastion_request_seconds",
            "Time to answer a predict request, audit log write included.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.alerts = Counter(
            "bastion_detector_alerts",
            "Detector alerts (one per key and check), by detector, check and action.",
            ("detector", "check", "action"),
            registry=self.registry,
        )
        self.kill_switch = Gauge(
            "bastion_kill_switch", "1 while the kill switch is on.", registry=self.registry
        )

        self.drifted_features = Gauge(
            "bastion_drift_features",
            "Input features whose KS test against the reference rejects (Bonferroni).",
            registry=self.registry,
        )
        self.mmd = Gauge(
            "bastion_drift_mmd",
            "Squared MMD of the window against the reference.",
            registry=self.registry,
        )
        self.mmd_pvalue = Gauge(
            "bastion_drift_mmd_pvalue",
            "Permutation p-value of the MMD test.",
            registry=self.registry,
        )
        self.prediction_pvalue = Gauge(
            "bastion_prediction_shift_pvalue",
            "Chi-square p-value of the window's predicted classes against the reference's.",
            registry=self.registry,
        )
        self.window = Gauge(
            "bastion_monitor_window_inputs",
            "Inputs in the monitoring window.",
            registry=self.registry,
        )
        self.accuracy = Gauge(
            "bastion_feedback_accuracy",
            "Accuracy over the latest labelled answers (NaN before any feedback).",
            registry=self.registry,
        )
        self.labelled = Gauge(
            "bastion_feedback_labels", "Labels counted in the accuracy.", registry=self.registry
        )
        self.incidents_open = Gauge(
            "bastion_incidents_open", "Incidents not yet resolved.", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
