"""Mutual-TLS settings reach librdkafka, the key password stays secret, bad files are one line.

The broker side (SASL_SSL, mTLS, refused logins) is tested in tests/integration/test_secured_broker.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from watchkeeper.broker import KafkaSecurityError, check_broker
from watchkeeper.config import Settings
from watchkeeper.redact import redact

KEY_PASSWORD = "key-password-5e1f0c2a"


def test_client_certificate_settings_map_to_librdkafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("WATCHKEEPER_SSL_CERTFILE", "/etc/kafka/client.pem")
    monkeypatch.setenv("WATCHKEEPER_SSL_KEYFILE", "/etc/kafka/client.key")
    monkeypatch.setenv("WATCHKEEPER_SSL_KEY_PASSWORD", KEY_PASSWORD)
    settings = Settings()
    config = settings.kafka_client_config()
    assert config["ssl.certificate.location"] == "/etc/kafka/client.pem"
    assert config["ssl.key.location"] == "/etc/kafka/client.key"
    assert config["ssl.key.password"] == KEY_PASSWORD
    assert KEY_PASSWORD not in repr(settings)
    assert redact(f"echoed {KEY_PASSWORD} back") == "echoed *** back"  # registered when handed out


def test_a_certificate_needs_its_key() -> None:
    with pytest.raises(ValidationError, match="ssl_certfile is set but ssl_keyfile is not: expected both or neither"):
        Settings(ssl_certfile=Path("client.pem"))


def test_a_missing_certificate_file_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    settings = Settings(
        bootstrap_servers="127.0.0.1:1",
        security_protocol="SSL",
        ssl_certfile=tmp_path / "missing.pem",
        ssl_keyfile=tmp_path / "missing.key",
    )
    with pytest.raises(KafkaSecurityError) as error:  # at once: librdkafka refuses to create the client
        check_broker(settings, "--bootstrap-servers", timeout=5)
    message = str(error.value)
    assert message.startswith("Kafka at 127.0.0.1:1 (from --bootstrap-servers): ") and "\n" not in message
    assert "ssl.certificate.location failed" in message and message.endswith("; check WATCHKEEPER_SSL_CERTFILE")
