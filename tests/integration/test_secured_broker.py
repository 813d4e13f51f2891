"""watchkeeper against a real secured broker: SASL_SSL with SCRAM-SHA-512, and mutual TLS.

One broker for these tests, separate from the shared PLAINTEXT test broker: started by
:class:`LocalKafka` on free ports with its own data directory, a CA and certificates made
with openssl at run time, and two client listeners:

* ``SASL_SSL``: SCRAM-SHA-512 (the user is stored when the storage is formatted) and PLAIN
  (the same user and password, in the listener's JAAS configuration: PLAIN sends the
  password itself, SCRAM never does), server certificate signed by the test CA;
* ``MTLS``: SSL with ``ssl.client.auth=required``; the client key is encrypted, so the
  key password is used too.

Every watchkeeper command runs as a subprocess with ``WATCHKEEPER_*`` variables, as a user
runs it, and neither password may appear in anything they print or log.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from confluent_kafka import Message

from watchkeeper.client import WatchkeeperClient
from watchkeeper.config import Settings
from watchkeeper.dev.kafka import Listener, LocalKafka
from watchkeeper.dev.processes import stop_process
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.notify.fake import FakeReceiver

from .conftest import TOPICS, read_topic

pytestmark = pytest.mark.integration

USER = "watchkeeper"
SASL_PASSWORD = f"sasl-{uuid.uuid4().hex}"
KEY_PASSWORD = f"key-{uuid.uuid4().hex}"
WRONG_PASSWORD = f"wrong-{uuid.uuid4().hex}"
MODEL = "secured-model"
T0 = 1_700_000_000.0  # a multiple of the 5 s window


@dataclass(frozen=True)
class Pki:
    """PEM files made for one test session."""

    ca: Path
    other_ca: Path  # signed nothing the broker uses: the "wrong CA"
    server_keystore: Path  # key and certificate of the broker (localhost)
    client_cert: Path
    client_key: Path  # encrypted with KEY_PASSWORD


def _openssl(directory: Path, *args: str) -> None:
    result = subprocess.run(
        ["openssl", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "KEY_PASSWORD": KEY_PASSWORD},
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {result.stderr}")


def _new_ec_key(name: str) -> list[str]:
    """``openssl req`` arguments that make a new P-256 key, unencrypted PKCS#8, in ``<name>.key``."""
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key"]


def _ca(directory: Path, name: str) -> None:
    _openssl(
        directory,
        "req", "-x509", "-new", *_new_ec_key(name), "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN=watchkeeper test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def _issue(directory: Path, name: str, extensions: str) -> None:
    _openssl(directory, "req", "-new", *_new_ec_key(name), "-out", f"{name}.csr", "-subj", f"/CN={name}")
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        directory,
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
    )  # fmt: skip


def _make_pki(directory: Path) -> Pki:
    """A CA, a second unrelated CA, a broker certificate for localhost and a client certificate."""
    directory.mkdir(parents=True)
    _ca(directory, "ca")
    _ca(directory, "other-ca")
    _issue(directory, "server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _issue(directory, "client", "extendedKeyUsage=clientAuth\n")
    _openssl(
        directory, "pkey", "-in", "client.key", "-out", "client.enc.key", "-aes256", "-passout", "env:KEY_PASSWORD"
    )
    keystore = directory / "server.keystore.pem"
    keystore.write_text((directory / "server.key").read_text() + (directory / "server.pem").read_text())
    return Pki(
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        server_keystore=keystore,
        client_cert=directory / "client.pem",
        client_key=directory / "client.enc.key",
    )


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (held open together while they are picked)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("localhost", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class SecuredKafka:
    """The running secured broker, its two client listeners and the PEM files."""

    broker: LocalKafka
    sasl_bootstrap: str
    mtls_bootstrap: str
    pki: Pki

    def sasl_env(
        self, password: str = SASL_PASSWORD, cafile: Path | None = None, mechanism: str = "SCRAM-SHA-512"
    ) -> dict[str, str]:
        """``WATCHKEEPER_*`` variables for the SASL_SSL listener (SCRAM-SHA-512 unless ``mechanism``)."""
        return {
            "WATCHKEEPER_BOOTSTRAP_SERVERS": self.sasl_bootstrap,
            "WATCHKEEPER_SECURITY_PROTOCOL": "SASL_SSL",
            "WATCHKEEPER_SASL_MECHANISM": mechanism,
            "WATCHKEEPER_SASL_USERNAME": USER,
            "WATCHKEEPER_SASL_PASSWORD": password,
            "WATCHKEEPER_SSL_CAFILE": str(cafile or self.pki.ca),
        }

    def mtls_env(self, key_password: str = KEY_PASSWORD, client_certificate: bool = True) -> dict[str, str]:
        """``WATCHKEEPER_*`` variables for the mTLS listener, with or without the client certificate."""
        env = {
            "WATCHKEEPER_BOOTSTRAP_SERVERS": self.mtls_bootstrap,
            "WATCHKEEPER_SECURITY_PROTOCOL": "SSL",
            "WATCHKEEPER_SSL_CAFILE": str(self.pki.ca),
        }
        if client_certificate:
            env["WATCHKEEPER_SSL_CERTFILE"] = str(self.pki.client_cert)
            env["WATCHKEEPER_SSL_KEYFILE"] = str(self.pki.client_key)
            env["WATCHKEEPER_SSL_KEY_PASSWORD"] = key_password
        return env


@pytest.fixture(scope="session")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    """A broker of its own with SASL_SSL and mTLS listeners (PLAINTEXT only for its health check)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed: it makes the test certificates (apt-get install -y openssl)")
    root = tmp_path_factory.mktemp("secured-kafka")
    pki = _make_pki(root / "pki")
    plain, controller, sasl, mtls = _free_ports(4)
    broker = LocalKafka(
        port=plain,
        controller_port=controller,
        data_dir=root / "kafka",
        heap="512m",
        listeners=(Listener("SASL_SSL", sasl, "SASL_SSL"), Listener("MTLS", mtls, "SSL")),
        properties={
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.sasl_ssl.plain.sasl.jaas.config": (
                f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}="{SASL_PASSWORD}";'
            ),
            "listener.name.mtls.ssl.client.auth": "required",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(pki.server_keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(pki.ca),
        },
        scram_users={USER: SASL_PASSWORD},
    )
    broker.up()
    try:
        yield SecuredKafka(broker, f"localhost:{sasl}", f"localhost:{mtls}", pki)
    finally:
        broker.down(wait=10)


def _settings(env: dict[str, str]) -> Settings:
    return Settings.model_validate({k.removeprefix("WATCHKEEPER_").lower(): v for k, v in env.items()})


def _topics(prefix: str) -> dict[str, str]:
    return {f"WATCHKEEPER_TOPIC_{name.upper()}": f"{prefix}{name}" for name in TOPICS}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "watchkeeper", *args]


def _watchkeeper(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(*args), capture_output=True, text=True, timeout=60, env={**os.environ, **env})


def _assert_no_secrets(outputs: dict[str, str], *secrets: str) -> None:
    for name, text in outputs.items():
        for secret in secrets:
            assert secret not in text, f"a password in the output of {name}"


def _profile(path: Path) -> None:
    rng = np.random.default_rng(3)
    columns = {name: ("numeric", rng.normal(size=3000)) for name in ("x1", "x2")}
    path.write_bytes(orjson.dumps(ReferenceProfile.build(MODEL, columns).to_dict()))


def _is_firing_x2(message: Message) -> bool:
    data = orjson.loads(message.value() or b"{}")["data"]
    return bool(data["subject"] == "x2" and data["status"] == "firing")


def test_sasl_ssl_topics_worker_sdk_notifier_and_tails(secured_kafka: SecuredKafka, tmp_path: Path) -> None:
    """topics create, a worker turning SDK events into a drift alert, a notifier and both tails, over SCRAM."""
    prefix = f"s{uuid.uuid4().hex[:8]}."
    profile = tmp_path / "profile.json"
    _profile(profile)
    config = tmp_path / "watchkeeper.yaml"
    model: dict[str, Any] = {
        "model_id": MODEL,
        "features": {"x1": "numeric", "x2": "numeric"},
        "reference": {"profile": str(profile)},
        "window": {"size": "5s", "allowed_lateness": "1s", "idle_close": "4s"},
        "drift": {"sequential": False, "monitor_prediction": False},
    }
    config.write_text(yaml.safe_dump({"models": [model]}))
    env = {
        **secured_kafka.sasl_env(),
        **_topics(prefix),
        "WATCHKEEPER_CONFIG": str(config),
        "WATCHKEEPER_APP_ID": f"{prefix}app",
        "WATCHKEEPER_INPUT_PARTITIONS": "2",
        "WATCHKEEPER_INSTANCE_ID": "w0",
        "WATCHKEEPER_METRICS_PORT": "0",
        "WATCHKEEPER_DATA_DIR": str(tmp_path / "worker"),
        "WATCHKEEPER_KAFKA_DEBUG": "security,broker",  # librdkafka's handshake lines pass the log redaction too
    }
    settings = _settings({k: v for k, v in env.items() if k != "WATCHKEEPER_KAFKA_DEBUG"})
    outputs: dict[str, str] = {}

    created = _watchkeeper("topics", "create", env=env)
    outputs["topics create"] = created.stdout + created.stderr
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created: ") and settings.topic_alerts in created.stdout

    log = tmp_path / "worker.log"
    worker = _start_worker(env, log, tmp_path)
    try:
        rng = np.random.default_rng(5)
        with WatchkeeperClient(settings=settings) as client:  # the SDK, from the same Settings
            for i in range(3000):  # 5 s windows of 1000 events; x2 shifts from the second on
                client.log_prediction(
                    model_id=MODEL,
                    event_id=f"e{i}",
                    timestamp=datetime.fromtimestamp(T0 + i * 0.005, UTC).isoformat(),
                    features={"x1": float(rng.normal()), "x2": float(rng.normal()) + (2.0 if i >= 1000 else 0.0)},
                )
            client.log_prediction(model_id="unknown-model", event_id="bad", features={"x1": 1.0})
        assert client.failed == 0

        alerts = read_topic(settings, settings.topic_alerts, lambda m: any(map(_is_firing_x2, m)), timeout=60)
        assert any(map(_is_firing_x2, alerts)), log.read_text(errors="replace")[-3000:]
        assert worker.poll() is None, log.read_text(errors="replace")[-3000:]

        with FakeReceiver("slack") as slack:
            notify_env = {**env, "SLACK_WEBHOOK_URL": f"{slack.url}/services/T0SECURED/B0SECURED/webhooksecret"}
            runs = {
                "notify slack": _command(
                    "notify", "slack", "--from-beginning", "--max-messages", "1", "--idle-exit", "20"
                ),
                "alerts tail": _command("alerts", "tail", "--from-beginning", "--idle-exit", "3"),
                "deadletter tail": _command("deadletter", "tail", "--from-beginning", "--idle-exit", "3"),
            }
            processes = {
                name: subprocess.Popen(
                    command,
                    env={**os.environ, **notify_env},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    cwd=tmp_path,
                )
                for name, command in runs.items()
            }
            for name, process in processes.items():
                stdout, stderr = process.communicate(timeout=60)
                outputs[name] = stdout + stderr
                assert process.returncode == 0, f"{name}: {stderr}"
            bodies = slack.bodies()
        assert len(bodies) == 1 and "FIRING" in bodies[0]["text"], bodies
        assert MODEL in json.dumps(bodies[0])
        assert any(line.startswith("ALERT FIRING") and "x2" in line for line in outputs["alerts tail"].splitlines())
        assert "model_id: 'unknown-model': not a configured model" in outputs["deadletter tail"]
    finally:
        stop_process(worker)
    outputs["worker log"] = log.read_text(errors="replace")
    assert "Traceback" not in outputs["worker log"]
    assert "sasl" in outputs["worker log"].lower()  # the debug output was on, so the check below means something
    _assert_no_secrets(outputs, SASL_PASSWORD)


def _worker_env(secured_kafka: SecuredKafka, tmp_path: Path, prefix: str, **sasl: Any) -> dict[str, str]:
    """A one-model worker's ``WATCHKEEPER_*`` variables for the SASL_SSL listener (``sasl``: see ``sasl_env``)."""
    profile = tmp_path / "profile.json"
    _profile(profile)
    config = tmp_path / "watchkeeper.yaml"
    model = {"model_id": MODEL, "features": {"x1": "numeric", "x2": "numeric"}, "reference": {"profile": str(profile)}}
    config.write_text(yaml.safe_dump({"models": [model]}))
    return {
        **secured_kafka.sasl_env(**sasl),
        **_topics(prefix),
        "WATCHKEEPER_CONFIG": str(config),
        "WATCHKEEPER_APP_ID": f"{prefix}app",
        "WATCHKEEPER_INPUT_PARTITIONS": "1",
        "WATCHKEEPER_INSTANCE_ID": "w0",
        "WATCHKEEPER_METRICS_PORT": "0",
        "WATCHKEEPER_DATA_DIR": str(tmp_path / "worker"),
    }


def _start_worker(env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            _command("worker", "--loglevel", "debug"),
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )


def test_sasl_plain_at_full_debug_never_shows_the_password(secured_kafka: SecuredKafka, tmp_path: Path) -> None:
    """PLAIN hands the broker the password itself (SCRAM never does): ``topics create`` and a worker at
    ``--loglevel debug`` with every librdkafka debug context (``all``: protocol and security included)
    log the SASL handshake, but the password is in no output, log line, dead-letter record or header."""
    prefix = f"p{uuid.uuid4().hex[:8]}."
    env = {**_worker_env(secured_kafka, tmp_path, prefix, mechanism="PLAIN"), "WATCHKEEPER_KAFKA_DEBUG": "all"}
    settings = _settings({k: v for k, v in env.items() if k != "WATCHKEEPER_KAFKA_DEBUG"})
    outputs: dict[str, str] = {}

    created = _watchkeeper("topics", "create", env=env)
    outputs["topics create"] = created.stdout + created.stderr
    assert created.returncode == 0, created.stderr

    log = tmp_path / "worker.log"
    worker = _start_worker(env, log, tmp_path)
    try:
        with WatchkeeperClient(settings=settings) as client:
            client.log_prediction(model_id="unknown-model", event_id="bad", features={"x1": 1.0})
        assert client.failed == 0
        letters = read_topic(settings, settings.topic_deadletter, lambda m: len(m) >= 1, timeout=60)
        assert len(letters) == 1, log.read_text(errors="replace")[-3000:]
        assert worker.poll() is None, log.read_text(errors="replace")[-3000:]
    finally:
        stop_process(worker)
    outputs["worker log"] = log.read_text(errors="replace")
    outputs["dead letter"] = repr((letters[0].key(), letters[0].value(), letters[0].headers()))
    assert "Traceback" not in outputs["worker log"]
    handshake = [line for line in outputs["worker log"].splitlines() if "SASL" in line and "PLAIN" in line]
    assert handshake, "librdkafka's PLAIN handshake was not logged: the check below would mean nothing"
    assert "worker started" in outputs["worker log"]
    _assert_no_secrets(outputs, SASL_PASSWORD, SASL_PASSWORD.encode().hex())


def test_a_worker_refused_by_the_broker_warns_in_one_line_naming_the_setting(
    secured_kafka: SecuredKafka, tmp_path: Path
) -> None:
    """A worker with a wrong SASL password keeps retrying (credentials can be fixed on the broker's side),
    with one warning line that names WATCHKEEPER_SASL_PASSWORD, not one per attempt."""
    prefix = f"r{uuid.uuid4().hex[:8]}."
    env = _worker_env(secured_kafka, tmp_path, prefix, password=WRONG_PASSWORD)
    log = tmp_path / "worker.log"
    worker = _start_worker(env, log, tmp_path)
    try:
        deadline = time.monotonic() + 45
        while "WATCHKEEPER_SASL_PASSWORD" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text(errors="replace")
            time.sleep(0.2)
        time.sleep(12)  # two more attempts (one every 5 s), refused too: no more warnings within the minute
        assert worker.poll() is None, log.read_text(errors="replace")
    finally:
        stop_process(worker)
    text = log.read_text(errors="replace")
    refusals = [line for line in text.splitlines() if "WATCHKEEPER_SASL_PASSWORD" in line]
    assert len(refusals) == 1, text
    assert f"Kafka at {secured_kafka.sasl_bootstrap}" in refusals[0] and "retrying" in refusals[0], refusals[0]
    assert "Traceback" not in text and "worker started" not in text
    _assert_no_secrets({"worker log": text}, WRONG_PASSWORD, SASL_PASSWORD)


def test_mutual_tls_topics_sdk_and_consumer(secured_kafka: SecuredKafka, tmp_path: Path) -> None:
    """Over the mTLS listener: topics create, the SDK (from librdkafka settings) producing, a consumer reading."""
    prefix = f"m{uuid.uuid4().hex[:8]}."
    env = {**secured_kafka.mtls_env(), **_topics(prefix), "WATCHKEEPER_INPUT_PARTITIONS": "2"}
    settings = _settings(env)

    created = _watchkeeper("topics", "create", env=env)
    assert created.returncode == 0, created.stderr
    assert settings.topic_predictions in created.stdout
    _assert_no_secrets({"topics create": created.stdout + created.stderr}, KEY_PASSWORD)

    pki = secured_kafka.pki
    librdkafka = {  # the SDK also takes plain librdkafka settings, over those of Settings
        "security.protocol": "SSL",
        "ssl.ca.location": str(pki.ca),
        "ssl.certificate.location": str(pki.client_cert),
        "ssl.key.location": str(pki.client_key),
        "ssl.key.password": KEY_PASSWORD,
    }
    plain = Settings(topic_predictions=settings.topic_predictions)
    with WatchkeeperClient(secured_kafka.mtls_bootstrap, settings=plain, producer_config=librdkafka) as client:
        ids = [client.log_prediction(model_id=MODEL, features={"x1": float(i)}) for i in range(20)]
    assert client.failed == 0

    messages = read_topic(settings, settings.topic_predictions, lambda m: len(m) >= len(ids), timeout=20)
    assert sorted((m.key() or b"").decode() for m in messages) == sorted(ids)


@dataclass(frozen=True)
class Mistake:
    env: dict[str, str]
    setting: str  # the WATCHKEEPER_* variable the one-line error must name


def test_wrong_credentials_fail_in_one_line_naming_the_setting(secured_kafka: SecuredKafka) -> None:
    """Wrong password, wrong CA, no client certificate, wrong key password: exit 2 at once, one line."""
    mistakes = {
        "wrong SASL password": Mistake(secured_kafka.sasl_env(password=WRONG_PASSWORD), "WATCHKEEPER_SASL_PASSWORD"),
        "wrong CA": Mistake(secured_kafka.sasl_env(cafile=secured_kafka.pki.other_ca), "WATCHKEEPER_SSL_CAFILE"),
        "no client certificate": Mistake(secured_kafka.mtls_env(client_certificate=False), "WATCHKEEPER_SSL_CERTFILE"),
        "wrong key password": Mistake(
            secured_kafka.mtls_env(key_password=WRONG_PASSWORD), "WATCHKEEPER_SSL_KEY_PASSWORD"
        ),
    }
    started = time.monotonic()
    processes = {  # in parallel: each takes about the start-up time of the command
        name: subprocess.Popen(
            _command("topics", "create", "--kafka-timeout", "60"),
            env={**os.environ, **mistake.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, mistake in mistakes.items()
    }
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=90)
        assert process.returncode == 2, f"{name}: {stdout}{stderr}"
        assert stdout == "" and "Traceback" not in stderr, f"{name}: {stderr}"
        lines = stderr.splitlines()
        assert len(lines) == 1, f"{name}: {stderr}"
        assert f"Kafka at {mistakes[name].env['WATCHKEEPER_BOOTSTRAP_SERVERS']}" in lines[0], f"{name}: {stderr}"
        assert mistakes[name].setting in lines[0], f"{name}: {stderr}"
        _assert_no_secrets({name: stderr}, SASL_PASSWORD, KEY_PASSWORD, WRONG_PASSWORD)
    assert time.monotonic() - started < 30  # recognised at once, not after --kafka-timeout (60 s)
