"""WorkerMetrics.forget_model: a model's gauges leave /metrics when the worker loses it."""

from __future__ import annotations

from prometheus_client import Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from watchkeeper.metrics import WorkerMetrics


def _series(metrics: WorkerMetrics) -> dict[tuple[str, str], set[tuple[str, frozenset[tuple[str, str]]]]]:
    """(model_id, "gauge" | "counter") -> {(sample name, labels)} from the rendered registry.

    The kind comes from the registry, not the text: the text format renders a counter's
    ``_created`` samples as a family of type gauge.
    """
    gauges = {family.name for family in metrics.registry.collect() if family.type == "gauge"}
    out: dict[tuple[str, str], set[tuple[str, frozenset[tuple[str, str]]]]] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        kind = "gauge" if family.name in gauges else "counter"
        for sample in family.samples:
            model = sample.labels.get("model_id")
            if model is not None:
                out.setdefault((model, kind), set()).add((sample.name, frozenset(sample.labels.items())))
    return out


def _populate(metrics: WorkerMetrics, model: str) -> None:
    """Two series of every gauge (one if ``model_id`` is its only label) and a few counters."""
    for gauge, labelnames in metrics._gauges:
        for variant in ("x", "y"):
            values = [model if name == "model_id" else f"{name}-{variant}" for name in labelnames]
            gauge.labels(*values).set(1.0)
    metrics.windows.labels(model).inc()
    metrics.events.labels(model, "ok").inc(3)
    metrics.alerts.labels(model, "drift", "firing").inc()


def test_every_per_model_gauge_is_forgettable() -> None:
    metrics = WorkerMetrics()
    gauges = {id(v) for v in vars(metrics).values() if isinstance(v, Gauge) and "model_id" in v._labelnames}
    assert gauges == {id(g) for g, _ in metrics._gauges}
    assert all("model_id" in names for _, names in metrics._gauges)


def test_forget_model_drops_its_gauges_only() -> None:
    metrics = WorkerMetrics()
    _populate(metrics, "credit")
    _populate(metrics, "churn")
    before = _series(metrics)
    assert before[("credit", "gauge")] and before[("churn", "gauge")]
    expected = sum(1 if names == ("model_id",) else 2 for _, names in metrics._gauges)
    assert len(before[("credit", "gauge")]) == expected

    metrics.forget_model("credit")
    after = _series(metrics)

    assert ("credit", "gauge") not in after
    gauge_names = tuple(f"{family.name}{{" for family in metrics.registry.collect() if family.type == "gauge")
    rendered = generate_latest(metrics.registry).decode().splitlines()
    assert not [line for line in rendered if line.startswith(gauge_names) and 'model_id="credit"' in line]
    assert after[("churn", "gauge")] == before[("churn", "gauge")]
    assert after[("credit", "counter")] == before[("credit", "counter")]  # per-process totals stay
    assert after[("churn", "counter")] == before[("churn", "counter")]


def test_forget_model_is_idempotent_and_model_can_return() -> None:
    metrics = WorkerMetrics()
    metrics.forget_model("unknown")  # nothing exported yet: no error
    _populate(metrics, "credit")
    metrics.forget_model("credit")
    metrics.forget_model("credit")
    assert ("credit", "gauge") not in _series(metrics)
    metrics.psi.labels("credit", "income").set(0.3)
    assert _series(metrics)[("credit", "gauge")] == {
        ("watchkeeper_drift_psi", frozenset({("model_id", "credit"), ("column", "income")}))
    }
