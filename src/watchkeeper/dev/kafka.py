"""A local Apache Kafka broker for development, tests, the demo and load tests.

One combined broker+controller in KRaft mode on localhost. The jars come from Maven
Central (``mvn dependency:copy-dependencies`` on the bundled ``kafka-pom.xml``) into a
cache directory, the storage is formatted once, and the broker runs as a background JVM
whose pid, log and data live under the data directory. ``up`` reuses a broker that is
already answering on the port, so tests, demo and benchmarks can share one.

By default the broker has one PLAINTEXT listener. Extra client listeners (e.g. SASL_SSL,
SSL with client certificates), extra ``server.properties`` and SCRAM users let a test run a
secured broker next to it; the PLAINTEXT listener stays for the health check and between
the broker and its controller.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = ["KafkaError", "Listener", "LocalKafka"]

KAFKA_VERSION = "4.1.1"
SCRAM_ITERATIONS = 4096
"""PBKDF2 iterations of the SCRAM credentials written at format time (Kafka's minimum)."""

_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="${sys:kafka.logs.dir}/server.log">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


class KafkaError(RuntimeError):
    """The local broker could not be fetched, formatted or started."""


@dataclass(frozen=True)
class Listener:
    """An extra client listener on localhost: ``name`` (as in ``listener.name.<name>.*``), port, protocol."""

    name: str
    port: int
    protocol: str  # SSL, SASL_SSL, SASL_PLAINTEXT or PLAINTEXT


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "watchkeeper" / f"kafka-{KAFKA_VERSION}"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class LocalKafka:
    """Fetch, format, start, health-check and stop a single-node KRaft broker.

    Example (needs Java and Maven; slow the first time)::

        kafka = LocalKafka(port=9092)
        kafka.up()          # no-op when a broker already answers on 9092
        print(kafka.bootstrap)  # localhost:9092
        kafka.down()
    """

    port: int = int(os.environ.get("WATCHKEEPER_KAFKA_PORT", "9092"))
    controller_port: int = int(os.environ.get("WATCHKEEPER_KAFKA_CONTROLLER_PORT", "9093"))
    data_dir: Path = Path(os.environ.get("WATCHKEEPER_KAFKA_DATA", ".watchkeeper/kafka"))
    cache_dir: Path = Path(os.environ.get("WATCHKEEPER_KAFKA_CACHE", str(_default_cache())))
    heap: str = os.environ.get("WATCHKEEPER_KAFKA_HEAP", "768m")
    listeners: tuple[Listener, ...] = ()
    properties: dict[str, str] = field(default_factory=dict)
    """``server.properties`` entries added to (or replacing) the defaults, e.g. TLS key stores."""
    scram_users: dict[str, str] = field(default_factory=dict)
    """user -> password, stored as SCRAM-SHA-256 and SCRAM-SHA-512 credentials when the storage is formatted."""

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    # -- fetching -------------------------------------------------------------------
    def fetch(self) -> Path:
        """Resolve the broker jars into the cache (once); returns the libs directory."""
        libs = self.cache_dir / "libs"
        marker = self.cache_dir / ".complete"
        if marker.exists():
            return libs
        if shutil.which("mvn") is None:
            raise KafkaError("mvn not found on PATH: Maven is needed to fetch Apache Kafka")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        pom = self.cache_dir / "pom.xml"
        pom.write_text(resources.files("watchkeeper.dev").joinpath("kafka-pom.xml").read_text())
        cmd = [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaError(f"fetching Kafka {KAFKA_VERSION} with Maven failed:\n{result.stdout[-2000:]}")
        marker.write_text(KAFKA_VERSION)
        return libs

    # -- configuration --------------------------------------------------------------
    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        extra = "".join(f",{x.name}://localhost:{x.port}" for x in self.listeners)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@localhost:{self.controller_port}",
            "listeners": f"PLAINTEXT://localhost:{self.port},CONTROLLER://localhost:{self.controller_port}{extra}",
            "advertised.listeners": f"PLAINTEXT://localhost:{self.port}{extra}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
            + "".join(f",{x.name}:{x.protocol}" for x in self.listeners),
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str((self.data_dir / "data").resolve()),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.retention.hours": "24",
            "log.segment.bytes": str(64 * 1024 * 1024),
            **self.properties,
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j2.xml").write_text(_LOG4J2)
        return path

    def _java(self, libs: Path, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.log_dir.resolve()}",
            f"-Dlog4j2.configurationFile={(self.data_dir / 'log4j2.xml').resolve()}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _format(self, libs: Path, config: Path) -> None:
        if (self.data_dir / "data" / "meta.properties").exists():
            return
        cluster_id = _kafka_uuid()
        scram = [arg for user, password in self.scram_users.items() for arg in _scram_arguments(user, password)]
        cmd = self._java(
            libs, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(config), *scram
        )
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaError(f"formatting Kafka storage failed:\n{result.stdout}\n{result.stderr}")

    # -- lifecycle ------------------------------------------------------------------
    def running_pid(self) -> int | None:
        """The pid of the broker this data directory started, if it is alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def healthy(self, timeout: float = 5.0) -> bool:
        """True when the broker answers a metadata request."""
        if not port_open("localhost", self.port):
            return False
        from confluent_kafka.admin import AdminClient

        try:
            admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000})
            admin.list_topics(timeout=timeout)
        except Exception:  # any failure to answer means "not healthy yet"
            return False
        return True

    def up(self, wait: float = 90.0) -> str:
        """Start the broker unless one already answers; returns 'reused' or 'started'."""
        if self.healthy():
            return "reused"
        if port_open("localhost", self.port):
            raise KafkaError(f"port {self.port} is taken by something that is not a Kafka broker")
        libs = self.fetch()
        config = self._write_config()
        self._format(libs, config)
        out = open(self.log_dir / "stdout.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            self._java(libs, "kafka.Kafka", str(config)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (self.log_dir / "stdout.log").read_text(errors="replace")[-2000:]
                raise KafkaError(f"Kafka exited with code {proc.returncode}:\n{tail}")
            if self.healthy(timeout=2.0):
                return "started"
            time.sleep(0.5)
        self.down()
        raise KafkaError(f"Kafka did not become healthy within {wait:.0f}s; see {self.log_dir}")

    def down(self, wait: float = 30.0) -> bool:
        """Stop the broker this data directory started; False when none was running."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            _reap(pid)
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> str:
        pid = self.running_pid()
        health = "healthy" if self.healthy() else "not answering"
        owner = f"pid {pid}" if pid else "not started by this data dir"
        return f"kafka {self.bootstrap}: {health} ({owner})"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _kafka_uuid() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _scram_arguments(user: str, password: str) -> list[str]:
    """``--add-scram`` arguments for ``user``: salted (RFC 5802), so the password is not on a command line."""
    arguments = []
    for mechanism, digest in (("SCRAM-SHA-256", "sha256"), ("SCRAM-SHA-512", "sha512")):
        salt = os.urandom(16)
        salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, SCRAM_ITERATIONS)
        salt64, salted64 = base64.b64encode(salt).decode(), base64.b64encode(salted).decode()
        credential = f'name={user},iterations={SCRAM_ITERATIONS},salt="{salt64}",saltedpassword="{salted64}"'
        arguments += ["--add-scram", f"{mechanism}=[{credential}]"]
    return arguments
