"""The redaction layer: registered secrets and credential patterns never survive redaction."""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from watchkeeper import cli
from watchkeeper.config import KAFKA_CLIENT_LOGGER, Settings
from watchkeeper.logs import LogFormatter
from watchkeeper.redact import MASK, MIN_FRAGMENT, SECRETS, RedactingFilter, Redactor, install_log_redaction

TOKEN = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", min_size=MIN_FRAGMENT, max_size=40)
SEGMENT = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
HOST = st.sampled_from(["hooks.example.com", "127.0.0.1:8080", "chat.internal", "hooks.slack.com"])
# any printable character but the mask's ``*``: a password may need any kind of escaping
PASSWORD = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="*"), min_size=8, max_size=30)
NOISE = st.text("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789:/=?&\"'{}\n", max_size=40)


@st.composite
def webhook(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A secret webhook URL and the parts of it that are secret on their own."""
    segments = [*draw(st.lists(SEGMENT, min_size=1, max_size=3)), draw(TOKEN)]
    query = draw(st.one_of(st.just(""), TOKEN.map(lambda v: f"?sig={v}")))
    path = "/" + "/".join(segments)
    url = f"https://{draw(HOST)}{path}{query}"
    tails = ["/".join(segments[i:]) for i in range(len(segments))]
    parts = [url, path, *tails, query.removeprefix("?sig=")]
    return url, [p for p in parts if len(p) >= MIN_FRAGMENT]


def _embeddings(url: str, key: str, password: str) -> list[str]:
    """Every way a receiver, a library or an error message may echo the secrets back."""
    path = url.split("/", 3)[3]
    last = url.rsplit("/", 1)[1].partition("?")[0]
    sasl_plain = b"user\x00user\x00" + password.encode()
    body = {"webhook": url, "routing_key": key, "password": password, "message": f"bad path /{path}"}
    return [
        f"POST {url} failed",
        f"HTTP Error 404: /{path}",
        f"token {last} is invalid",
        f"/callback?u={quote(url, safe='')}&k={quote_plus(key)}&p={quote(password, safe='')}",
        json.dumps(body),
        json.dumps(body, ensure_ascii=False),
        json.dumps(body).replace("/", "\\/"),
        f"Authorization: Bearer {key}\r\nX-Hook: /{path}",
        f"SaslAuthenticateRequest_v1(sasl_auth_bytes={sasl_plain!r})",
        repr({"sasl.password": password, "key": key}),
    ]


@settings(max_examples=300, deadline=None)
@given(webhook(), TOKEN, PASSWORD, NOISE, NOISE, st.integers(0, 9))
def test_registered_secrets_never_survive_in_any_echo(
    hook: tuple[str, list[str]], key: str, password: str, before: str, after: str, form: int
) -> None:
    url, url_parts = hook
    redactor = Redactor([SecretStr(url), SecretStr(key), password, None])
    text = before + _embeddings(url, key, password)[form] + after
    redacted = redactor.redact(text)
    for secret in (*url_parts, key, password, json.dumps(password)[1:-1], quote(password, safe="")):
        assert secret not in redacted, (secret, text, redacted)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "see https://hooks.slack.com/services/T0A1B2C3D/B0A1B2C3D/abcdefghijklmnopqrstuvwx",
            "see https://hooks.slack.com/***",
        ),
        ("POST /services/T0A1B2C3D/B0A1B2C3D/abcdefghijklmnopqrstuvwx: 404", "POST /services/***: 404"),
        ("no_team: T0A1B2C3D/B0A1B2C3D/abcdefghijklmnopqrstuvwx", "no_team: ***"),
        ("Authorization: Bearer abc.def.ghi", "Authorization: ***"),
        ('headers={"authorization": "Basic dXNlcjpwYXNz"}', 'headers={"authorization": "***"}'),
        ("got bearer eyJhbGciOiJIUzI1NiJ9 back", f"got bearer {MASK} back"),
        ('{"routing_key": "R0123456789abcdefABCDEF012345678"}', '{"routing_key": "***"}'),
        ("sasl.password=hunter22 sasl_password: 'hunter22'", "sasl.password=*** sasl_password: '***'"),
        ("http://am:s3cr3t@alertmanager:9093/api", "http://am:***@alertmanager:9093/api"),
        ("sasl_auth_bytes=b'u\\x00u\\x00pw'", "sasl_auth_bytes=b'***'"),
        ("xoxb-1234567890-abcdefghij", MASK),
    ],
)
def test_patterns_mask_credentials_nobody_registered(text: str, expected: str) -> None:
    assert Redactor().redact(text) == expected


def test_ordinary_text_is_left_alone() -> None:
    redactor = Redactor(["https://hooks.example.com/services/abcdefghijkl"])
    text = "event=delivered receiver=team-slack dedup_key=fp-1 tokens=3 http_status=200 path=/v2/enqueue"
    assert redactor.redact(text) == text


def test_short_url_parts_are_masked_only_within_the_whole_value() -> None:
    redactor = Redactor(["https://example.com/a/b?x=1"])
    assert redactor.redact("https://example.com/a/b?x=1 /a/b") == f"{MASK} /a/b"


def test_log_fields_are_redacted_recursively_and_by_name() -> None:
    redactor = Redactor(["hunter2hunter2"])
    nested = [b"hunter2hunter2", ValueError("hunter2hunter2")]
    fields = {"error": "auth hunter2hunter2", "password": "x", "n": 3, "nested": nested}
    assert redactor.redact_value(fields) == {"error": f"auth {MASK}", "password": MASK, "n": 3, "nested": [MASK, MASK]}


@pytest.fixture
def root_output() -> Iterator[io.StringIO]:
    """A fresh root handler writing to a buffer, with the redaction installed; restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    package = logging.getLogger("watchkeeper")  # (the notifier's setup_logging gives it its own handler)
    saved_package = package.handlers[:], package.level, package.propagate
    package.handlers[:], package.propagate = [], True
    package.setLevel(logging.NOTSET)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(LogFormatter("text"))  # prints extra fields and tracebacks too
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    install_log_redaction()
    install_log_redaction()  # idempotent
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    yield buffer
    root.handlers[:], root.level = saved
    package.handlers[:], package.level, package.propagate = saved_package


def test_filter_redacts_message_args_traceback_stack_and_extra(root_output: io.StringIO) -> None:
    secret = "pw-Zq8v3LmN0t"
    SECRETS.add(secret)
    log = logging.getLogger("aiokafka.conn")
    log.debug("SaslAuthenticateRequest_v1(sasl_auth_bytes=b'u\\x00u\\x00%s')", secret, extra={"fields": {"k": secret}})
    try:
        raise RuntimeError(f"login failed for {secret}")
    except RuntimeError:
        log.exception("failed %s", "once", extra={"fields": {}}, stack_info=True)
    log.warning("broken format %s %s", secret, extra={"fields": {}})  # one argument short
    out = root_output.getvalue()
    assert secret not in out
    assert "RuntimeError: login failed for ***" in out and "broken format" in out


def test_cli_main_installs_the_filter_on_the_root_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "main-Secret-9f8e7d"
    SECRETS.add(secret)
    root = logging.getLogger()
    saved = root.handlers[:]
    buffer = io.StringIO()
    root.handlers[:] = []
    monkeypatch.setattr(sys, "stderr", buffer)  # basicConfig's handler writes here
    monkeypatch.setattr(cli, "app", lambda: logging.getLogger("watchkeeper.worker").warning("token %s", secret))
    try:
        cli.main()
    finally:
        root.handlers[:] = saved
    assert "token ***" in buffer.getvalue() and secret not in buffer.getvalue()


def test_sasl_password_is_registered_when_handed_to_kafka() -> None:
    password = "Kafka-Pa55-registered"
    config = Settings(security_protocol="SASL_SSL", sasl_username="wk", sasl_password=password).kafka_client_config()
    assert config["sasl.password"] == password
    assert SECRETS.redact(f"auth as wk:{password}") == "auth as wk:***"


def test_librdkafka_debug_is_off_unless_asked_and_output_is_routed_through_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = Settings().kafka_client_config()
    assert "debug" not in config and config["logger"].name == KAFKA_CLIENT_LOGGER
    with caplog.at_level(logging.WARNING, logger="watchkeeper.config"):
        asked = Settings(kafka_debug=" broker, security ").kafka_client_config()
    assert asked["debug"] == "broker,security"
    assert isinstance(asked["logger"], logging.Logger) and asked["logger"].name == KAFKA_CLIENT_LOGGER
    assert "may contain secrets" in caplog.text
    assert Settings(kafka_debug="").kafka_debug is None


def test_unknown_debug_context_names_field_value_and_choices() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(kafka_debug="broker,everything")
    message = str(info.value)
    assert "kafka_debug" in message and "'broker,everything'" in message and "['everything']" in message
    assert "'security'" in message


def test_librdkafka_output_reaches_python_logging_redacted(root_output: io.StringIO) -> None:
    from confluent_kafka import Producer

    password = "rdkafka-Debug-Pw-77"
    settings = Settings(
        bootstrap_servers="127.0.0.1:1",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="wk",
        sasl_password=password,
        kafka_debug="broker,security",
    )
    producer = Producer(settings.kafka_client_config())
    deadline = time.monotonic() + 20
    while "BROKER [rdkafka#producer-" not in root_output.getvalue() and time.monotonic() < deadline:
        producer.poll(0.1)  # librdkafka's log lines are handed over on poll (slowly on a loaded machine)
    # a line as confluent-kafka forwards it ("%s [%s] %s"), holding the password like a protocol dump
    logging.getLogger(KAFKA_CLIENT_LOGGER).debug("%s [%s] %s", "SASL", "rdkafka#producer-1", f"auth wk\x00{password}")
    out = root_output.getvalue()
    assert f" DEBUG {KAFKA_CLIENT_LOGGER} BROKER [rdkafka#producer-" in out  # -N: Nth in process
    assert "SASL [rdkafka#producer-1] auth wk" in out
    assert password not in out
