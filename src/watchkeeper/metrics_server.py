"""The Prometheus ``/metrics`` endpoint and the health endpoints: listen address, optional TLS,
optional HTTP basic auth.

prometheus-client's WSGI app, served by a threading wsgiref server in a daemon thread (as
``prometheus_client.start_http_server`` does), with three additions it lacks: a basic-auth
check in front of the app, TLS on the listening socket, and ``/healthz`` (200 while the
process serves) and ``/readyz`` (200 when the process's :class:`Readiness` check passes,
else 503 ``not ready: <why>``). The health endpoints are not behind basic auth (probes
carry no credentials; they reveal no metric), but are behind TLS when it is on. Settings:
``metrics_port`` (0: no endpoint), ``metrics_address``, ``metrics_certfile`` +
``metrics_keyfile``, ``metrics_username`` + ``metrics_password`` (docs/configuration.md,
docs/operations.md).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any
from weakref import WeakKeyDictionary
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from watchkeeper.config import Settings
from watchkeeper.redact import register_secrets

__all__ = ["MetricsServer", "Readiness", "basic_auth", "readiness", "start_metrics_server", "with_health"]

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def basic_auth(app: WSGIApp, username: str, password: str) -> WSGIApp:
    """``app`` behind HTTP basic auth: 401 with a challenge unless the credentials match."""
    expected = (username.encode(), password.encode())

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        scheme, _, encoded = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
        try:
            user, _, secret = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            user, secret = b"", b""
        # both comparisons always run, in constant time: no early exit on a wrong username
        matches = hmac.compare_digest(user, expected[0]) & hmac.compare_digest(secret, expected[1])
        if scheme.lower() == "basic" and matches:
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [("WWW-Authenticate", 'Basic realm="watchkeeper metrics"'), ("Content-Type", "text/plain")],
        )
        return [b"401 Unauthorized: metrics_username / metrics_password required\n"]

    return guarded


class Readiness:
    """What ``/readyz`` answers: the process registers a check (:meth:`set_check`) once it can
    tell; until then it is not ready. A check returns why the process is not ready, or None."""

    def __init__(self) -> None:
        self._check: Callable[[], str | None] | None = None

    def set_check(self, check: Callable[[], str | None]) -> None:
        self._check = check

    def not_ready(self) -> str | None:
        """Why the process is not ready; None when it is."""
        if self._check is None:
            return "starting: no readiness check registered yet"
        return self._check()


_READINESS: WeakKeyDictionary[CollectorRegistry, Readiness] = WeakKeyDictionary()


def readiness(registry: CollectorRegistry) -> Readiness:
    """The readiness of the process that exports ``registry`` (one per registry, made on first use),
    shared by the endpoint serving the registry and the code that knows the process's state."""
    return _READINESS.setdefault(registry, Readiness())


def _text(start_response: StartResponse, status: str, text: str) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")])
    return [text.encode()]


def with_health(app: WSGIApp, ready: Readiness) -> WSGIApp:
    """``app`` with ``/healthz`` and ``/readyz`` in front of it (every other path goes to ``app``)."""

    def routed(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            why = ready.not_ready()
            if why is None:
                return _text(start_response, "200 OK", "ready\n")
            return _text(start_response, "503 Service Unavailable", f"not ready: {why}\n")
        return app(environ, start_response)

    return routed


class _Handler(WSGIRequestHandler):
    """One request in its own thread: the TLS handshake too (a silent client never blocks the
    accept loop), bounded by ``timeout``; no access log line per scrape on stderr."""

    timeout = 30.0

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        return


class MetricsServer:
    """A running endpoint; :meth:`close` stops it (tests; the worker's is a daemon thread)."""

    def __init__(self, server: WSGIServer, scheme: str) -> None:
        self.server = server
        host, port = server.socket.getsockname()[:2]
        self.address, self.port = str(host), int(port)
        self.url = f"{scheme}://{f'[{host}]' if ':' in self.address else host}:{port}/metrics"
        self._thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


def _tls_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    certfile, keyfile = str(settings.metrics_certfile), str(settings.metrics_keyfile)
    try:  # an empty password: an encrypted key fails here instead of prompting on the terminal
        context.load_cert_chain(certfile=certfile, keyfile=keyfile, password=b"")
    except OSError as exc:  # ssl.SSLError included
        raise ValueError(
            f"metrics_certfile {certfile!r}, metrics_keyfile {keyfile!r}: cannot load ({exc}); "
            "expected a PEM certificate (chain) and its unencrypted PEM private key"
        ) from exc
    return context


def start_metrics_server(settings: Settings, registry: CollectorRegistry) -> MetricsServer:
    """Serve ``registry`` on ``metrics_address``:``metrics_port`` as the settings say, with
    ``/healthz`` and ``/readyz`` (``readiness(registry)``) outside basic auth.

    Raises ValueError naming the settings when the address cannot be bound or the TLS files
    cannot be loaded.
    """
    app: WSGIApp = make_wsgi_app(registry)
    if settings.metrics_username is not None and settings.metrics_password is not None:
        register_secrets(settings.metrics_password)
        app = basic_auth(app, settings.metrics_username, settings.metrics_password.get_secret_value())
        if settings.metrics_certfile is None:
            log.warning(
                "metrics basic auth without TLS: the password crosses the network in clear text",
                extra={"stage": "metrics"},
            )
    app = with_health(app, readiness(registry))
    context = _tls_context(settings) if settings.metrics_certfile is not None else None
    address, port = settings.metrics_address, settings.metrics_port
    try:
        family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

        class Server(ThreadingWSGIServer):
            address_family = family

            def handle_error(self, request: Any, client_address: Any) -> None:
                log.debug("metrics request from %s failed", client_address, exc_info=True, extra={"stage": "metrics"})

        server = make_server(address, port, app, Server, handler_class=_Handler)
    except OSError as exc:
        raise ValueError(
            f"metrics_address {address!r}, metrics_port {port}: cannot listen ({exc}); "
            "expected a local address (0.0.0.0, 127.0.0.1, ::, a host name) and a free port"
        ) from exc
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    return MetricsServer(server, "https" if context is not None else "http")
