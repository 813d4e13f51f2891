"""The /metrics endpoint: listen address, TLS and basic auth; group names from input only when enabled."""

from __future__ import annotations

import base64
import math
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from pydantic import ValidationError

from watchkeeper.config import Settings
from watchkeeper.metrics import OTHER_GROUP, WorkerMetrics
from watchkeeper.metrics_server import MetricsServer, start_metrics_server
from watchkeeper.monitor.label_windows import LabelReport


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _settings(**values: Any) -> Settings:
    return Settings(metrics_port=0, metrics_address="127.0.0.1", **values)  # port 0: any free port


@pytest.fixture
def secured(certificate: tuple[Path, Path]) -> Iterator[tuple[MetricsServer, ssl.SSLContext]]:
    metrics = WorkerMetrics()
    metrics.windows.labels("credit").inc()
    settings = _settings(
        metrics_certfile=certificate[0],
        metrics_keyfile=certificate[1],
        metrics_username="prometheus",
        metrics_password="s3cret:with colon",
    )
    server = start_metrics_server(settings, metrics.registry)
    yield server, ssl.create_default_context(cafile=str(certificate[0]))
    server.close()


def _get(url: str, context: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        assert exc.headers["WWW-Authenticate"] == 'Basic realm="watchkeeper metrics"'
        return exc.code, exc.read().decode()


def test_tls_and_basic_auth(secured: tuple[MetricsServer, ssl.SSLContext]) -> None:
    server, context = secured
    assert server.url == f"https://127.0.0.1:{server.port}/metrics"
    assert _get(server.url, context)[0] == 401
    assert _get(server.url, context, ("prometheus", "wrong"))[0] == 401
    assert _get(server.url, context, ("someone", "s3cret:with colon"))[0] == 401
    status, body = _get(server.url, context, ("prometheus", "s3cret:with colon"))
    assert status == 200
    assert 'watchkeeper_windows_closed_total{model_id="credit"} 1.0' in body


def test_plain_http_is_not_served_on_a_tls_port(secured: tuple[MetricsServer, ssl.SSLContext]) -> None:
    server, context = secured
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(server.url.replace("https://", "http://"), timeout=5)
    assert _get(server.url, context)[0] == 401  # the endpoint survives it


def test_a_silent_client_does_not_block_scrapes(secured: tuple[MetricsServer, ssl.SSLContext]) -> None:
    """The TLS handshake runs in the request's thread, not in the accept loop."""
    server, context = secured
    with socket.create_connection(("127.0.0.1", server.port)):
        assert _get(server.url, context)[0] == 401


def _other_local_address() -> str | None:
    """An address of this host other than loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_the_listen_address_is_honoured() -> None:
    server = start_metrics_server(_settings(), WorkerMetrics().registry)
    try:
        assert (server.address, server.server.socket.getsockname()[0]) == ("127.0.0.1", "127.0.0.1")
        assert _get(server.url)[0] == 200  # no auth configured: open
        other = _other_local_address()
        if other is not None:
            with pytest.raises(OSError), socket.create_connection((other, server.port), timeout=2):
                pass
    finally:
        server.close()


def test_errors_name_the_settings(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError, match=r"metrics_certfile '.*missing.pem', metrics_keyfile .*expected a PEM"):
        start_metrics_server(_settings(metrics_certfile=missing, metrics_keyfile=missing), WorkerMetrics().registry)
    encrypted = tmp_path / "encrypted.pem"
    subprocess.run(
        ["openssl", "pkey", "-in", str(certificate[1]), "-aes256", "-passout", "pass:abcd", "-out", str(encrypted)],
        check=True,
        capture_output=True,
    )
    with pytest.raises(ValueError, match=r"metrics_keyfile '.*encrypted.pem': cannot load .*unencrypted"):
        start_metrics_server(
            _settings(metrics_certfile=certificate[0], metrics_keyfile=encrypted), WorkerMetrics().registry
        )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=rf"metrics_address '127.0.0.1', metrics_port {port}: cannot listen"):
            start_metrics_server(Settings(metrics_port=port, metrics_address="127.0.0.1"), WorkerMetrics().registry)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metrics_certfile": "/c.pem"}, "metrics_certfile is set but metrics_keyfile is not"),
        ({"metrics_keyfile": "/k.pem"}, "metrics_keyfile is set but metrics_certfile is not"),
        ({"metrics_username": "p"}, "metrics_username is set but metrics_password is not"),
        ({"metrics_password": "hunter2"}, "metrics_password is set but metrics_username is not"),
        ({"metrics_group_labels": -1}, "metrics_group_labels"),
    ],
)
def test_incomplete_settings_are_rejected_without_showing_the_password(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as error:
        Settings(**values)
    assert "hunter2" not in str(error.value)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().metrics_address == "0.0.0.0"
    assert Settings().metrics_group_labels == 0
    monkeypatch.setenv("WATCHKEEPER_METRICS_ADDRESS", "127.0.0.1")
    monkeypatch.setenv("WATCHKEEPER_METRICS_USERNAME", "prometheus")
    monkeypatch.setenv("WATCHKEEPER_METRICS_PASSWORD", "hunter2")
    monkeypatch.setenv("WATCHKEEPER_METRICS_GROUP_LABELS", "20")
    settings = Settings()
    assert (settings.metrics_address, settings.metrics_username, settings.metrics_group_labels) == (
        "127.0.0.1",
        "prometheus",
        20,
    )
    assert "hunter2" not in repr(settings)


def _report(groups: list[str], start: float = 0.0, tpr_n: int = 10) -> LabelReport:
    rates = {"sufficient": True, "selection_rate": {"value": 0.5, "n": 50}, "tpr": {"value": 0.0, "n": tpr_n}}
    disparities = {"equal_opportunity_difference": {"difference": None, "difference_all_groups": 0.1}}
    fairness = {"attributes": {"race": {"groups": {g: rates for g in groups}, "disparities": disparities}}}
    return LabelReport(
        "credit", "1", start, start + 60.0, True, None, fairness, 100, 100, 0, 30.0, None, None, ready=True
    )


def _value(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_label_gauges_describe_the_newest_window_and_nothing_older() -> None:
    metrics = WorkerMetrics(group_labels=10)
    metrics.observe_labels(_report(["a", "b"]))
    rate = {"model_id": "credit", "attribute": "race", "metric": "tpr"}
    assert _value(metrics, "watchkeeper_fairness_group_rate", group="b", **rate) == 0.0
    assert (
        _value(metrics, "watchkeeper_label_window_end_timestamp_seconds", model_id="credit", monitor="fairness") == 60
    )
    newer = _report(["a"], start=60.0, tpr_n=0)  # group b absent; a's TPR is 0 of 0
    metrics.observe_labels(newer)
    assert _value(metrics, "watchkeeper_fairness_group_rate", group="b", **rate) is None  # removed, not stale
    assert math.isnan(_value(metrics, "watchkeeper_fairness_group_rate", group="a", **rate) or 0.0)
    disparity = {"model_id": "credit", "attribute": "race", "metric": "equal_opportunity_difference"}
    assert math.isnan(_value(metrics, "watchkeeper_fairness_disparity", groups="sufficient", **disparity) or 0.0)
    assert _value(metrics, "watchkeeper_fairness_disparity", groups="all", **disparity) == 0.1
    assert math.isnan(_value(metrics, "watchkeeper_label_delay_seconds", model_id="credit", quantile="0.9") or 0.0)
    assert (
        _value(metrics, "watchkeeper_label_window_end_timestamp_seconds", model_id="credit", monitor="fairness") == 120
    )
    metrics.observe_labels(_report(["a", "b"]))  # an older window does not move them back
    assert _value(metrics, "watchkeeper_fairness_group_rate", group="b", **rate) is None


def _groups(metrics: WorkerMetrics) -> set[str]:
    return {
        sample.labels["group"]
        for family in metrics.registry.collect()
        for sample in family.samples
        if family.name in ("watchkeeper_fairness_group_rate", "watchkeeper_fairness_group_sufficient")
    }


def test_group_names_from_input_are_exported_only_when_enabled_and_capped() -> None:
    groups = ["a", "b", "c", "d"]
    hidden = WorkerMetrics()
    hidden.observe_labels(_report(groups))
    assert _groups(hidden) == set()
    assert b'group="a"' not in generate_latest(hidden.registry)
    shown = WorkerMetrics(group_labels=2)
    shown.observe_labels(_report(groups))
    assert _groups(shown) == {"a", "b", OTHER_GROUP}
    shown.forget_model("credit")
    shown.observe_labels(_report(["d", "c"]))
    assert _groups(shown) == {"d", "c"}  # a model that comes back starts a fresh cap
    with pytest.raises(ValueError, match="group_labels: -1"):
        WorkerMetrics(group_labels=-1)
