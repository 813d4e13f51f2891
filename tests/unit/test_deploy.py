"""The shipped deployment files: alert rules (promtool), Prometheus and Alertmanager configs, compose."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules"
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed: apt-get install -y prometheus (make system-deps, as root)"
)


def _run(*args: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    out = _run(PROMTOOL or "promtool", "check", "rules", RULES / "watchkeeper.rules.yml")
    assert "SUCCESS: 6 rules found" in out


@needs_promtool
def test_rules_pass_their_unit_tests() -> None:
    """Each alert fires on its input series, and not on the near misses next to them."""
    out = _run(PROMTOOL or "promtool", "test", "rules", "watchkeeper.rules.test.yml", cwd=RULES)
    assert "SUCCESS" in out


def test_every_rule_is_unit_tested() -> None:
    rules = yaml.safe_load((RULES / "watchkeeper.rules.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((RULES / "watchkeeper.rules.test.yml").read_text())
    tested = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert (
        names
        == tested
        == {
            "WatchkeeperWorkerDown",
            "WatchkeeperNoWindowClosed",
            "WatchkeeperConsumerLagGrowing",
            "WatchkeeperDeadLetters",
            "WatchkeeperNotifierFailures",
            "WatchkeeperNotifierDown",
        }
    )


@needs_promtool
def test_prometheus_config_loads_the_rules(tmp_path: Path) -> None:
    """The shipped prometheus.yml, with its rules directory where compose mounts it."""
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert "/etc/prometheus/rules/" in text
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/etc/prometheus/rules/", f"{RULES}/"))
    out = _run(PROMTOOL or "promtool", "check", "config", config)
    assert "SUCCESS: 1 rule files found" in out


@pytest.mark.skipif(AMTOOL is None, reason="amtool not installed: apt-get install -y prometheus-alertmanager")
def test_alertmanager_config_is_valid() -> None:
    _run(AMTOOL or "amtool", "check-config", DEPLOY / "alertmanager" / "alertmanager.yml")


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_images_are_pinned() -> None:
    """Every image names a version tag (not ``latest``, not none); ours is built from the Dockerfile."""
    services = _compose()["services"]
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image}: no tag"
        assert tag != "latest", f"{name}: {image}"
        if repository == "watchkeeper":
            assert "build" in service, name
        else:
            assert re.fullmatch(r"v?\d+(\.\d+)+", tag), f"{name}: {image}: not a version tag"


def test_compose_runs_alertmanager_and_its_notifier() -> None:
    compose = _compose()
    services = compose["services"]
    notify = services["notify-alertmanager"]
    assert notify["command"][:2] == ["notify", "alertmanager"]
    url = notify["command"][notify["command"].index("--url") + 1]
    assert url == "http://alertmanager:9093"
    port = notify["command"][notify["command"].index("--metrics-port") + 1]
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"][0] for job in prometheus["scrape_configs"]}
    assert targets["watchkeeper-notify"] == f"notify-alertmanager:{port}"
    assert targets["watchkeeper"] == f"worker:{services['worker']['environment']['WATCHKEEPER_METRICS_PORT']}"
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    mounted = {volume.split(":")[0] for volume in services["prometheus"]["volumes"]}
    assert "./deploy/prometheus/rules" in mounted
    for service in ("notify-alertmanager", "worker"):
        assert services[service]["environment"]["WATCHKEEPER_BOOTSTRAP_SERVERS"] == "kafka:19092"
    assert {"alertmanager-data", "prometheus-data"} <= set(compose["volumes"])
