"""The worker process: stage 1 and stage 2 on librdkafka, each in its own thread.

Like Quix Streams, the worker is split by concern: :mod:`~watchkeeper.stream.kafka` (the
transactional consume → process → produce loop, changelog restore),
:mod:`~watchkeeper.stream.ingest` (stage 1), :mod:`~watchkeeper.stream.aggregate`
(stage 2), and this module, which wires them to one :class:`MonitorRuntime`, follows the
references topic (profiles learned by any worker) and stops cleanly on SIGTERM / SIGINT.
Why both stages left Faust, with measurements: docs/architecture.md, "The worker".
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
import uuid
from types import FrameType

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from watchkeeper.config import ModelConfig, Settings, WatchkeeperConfig, format_duration
from watchkeeper.logs import log_context
from watchkeeper.metrics import WorkerMetrics
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.monitor.runtime import MonitorRuntime
from watchkeeper.stream.aggregate import Aggregator
from watchkeeper.stream.ingest import Ingester
from watchkeeper.stream.kafka import TransactionalStage, run_forever

__all__ = ["Worker"]

log = logging.getLogger("watchkeeper.worker")

_GC_YOUNG = 10_000  # allocations between young-generation collections (CPython's default: 700)


def describe_model(config: ModelConfig) -> str:
    """One start-up line saying what is monitored for a model and against what."""
    reference = (
        f"profile {config.reference.profile}"
        if config.reference.profile is not None
        else f"learned from the first {config.reference.learn_from_first} events"
    )
    monitors = [
        name
        for name, on in (
            ("drift", config.drift.enabled),
            ("CUSUM", config.drift.enabled and config.drift.sequential),
            ("data quality", config.data_quality.enabled),
            ("accuracy", config.accuracy.enabled),
            ("fairness", config.fairness.enabled and bool(config.sensitive_attributes)),
        )
        if on
    ]
    window = config.window
    return (
        f"model {config.model_id} ({config.task}): {len(config.features)} features, reference {reference}, "
        f"windows of {format_duration(window.size)} (lateness {format_duration(window.allowed_lateness)}), "
        f"monitors: {', '.join(monitors) or 'none'}"
    )


class Worker:
    """One worker process; ``run()`` blocks until :meth:`stop` (or a signal)."""

    def __init__(self, settings: Settings, config: WatchkeeperConfig, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.runtime = MonitorRuntime(config, max_waiting=settings.join_max_waiting)
        self._stopping = threading.Event()
        self._errors: list[BaseException] = []

    def stop(self, *_: object) -> None:
        self._stopping.set()

    def _run_stage(self, stage: TransactionalStage, max_messages: int, timeout: float) -> None:
        with log_context(stage=stage.name):  # this thread's log lines, librdkafka's included
            try:
                run_forever(stage, self._stopping.is_set, max_messages, timeout)
            except BaseException as exc:  # a fatal error stops the whole worker (and is re-raised by run)
                self._errors.append(exc)
                self._stopping.set()
            finally:
                stage.close()

    def _follow_references(self) -> None:
        """Adopt every profile on the references topic (all partitions, from the start)."""
        with log_context(stage="references", topic=self.settings.topic_references):
            self._read_references()

    def _read_references(self) -> None:
        settings = self.settings
        consumer = Consumer(
            {
                **settings.kafka_client_config(),
                "group.id": f"{settings.app_id}-references-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.max.bytes": 64 * 1024 * 1024,
            }
        )
        try:
            metadata = consumer.list_topics(settings.topic_references, timeout=30)
            partitions = metadata.topics[settings.topic_references].partitions
            consumer.assign([TopicPartition(settings.topic_references, p, OFFSET_BEGINNING) for p in partitions])
            while not self._stopping.is_set():
                for record in consumer.consume(num_messages=100, timeout=0.5):
                    error = record.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("references topic: %s", error)
                        continue
                    try:
                        self.runtime.adopt_profile(ReferenceProfile.from_dict(orjson.loads(record.value() or b"")))
                    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
                        log.error(
                            "ignoring invalid reference profile at offset %s: %s",
                            record.offset(),
                            exc,
                            extra={"partition": record.partition(), "offset": record.offset()},
                        )
        finally:
            consumer.close()

    def run(self) -> None:
        """Run both stages until stopped; SIGTERM and SIGINT stop it cleanly."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        settings = self.settings
        with log_context(stage=Ingester.name):  # setting up the clients logs too
            stage1 = Ingester(settings, self.runtime, self.metrics)
        with log_context(stage=Aggregator.name):
            stage2 = Aggregator(settings, self.runtime, self.metrics)
        self.metrics.watch_stages(stage1, stage2, self.runtime, settings.metrics_ready_windows)  # lag, /readyz
        threads = [
            threading.Thread(target=self._follow_references, name="references", daemon=True),
            threading.Thread(
                target=self._run_stage, args=(stage1, settings.batch_size, settings.flush_interval), name="stage1"
            ),
            threading.Thread(target=self._run_stage, args=(stage2, 500, 0.2), name="stage2"),
        ]
        _tune_gc()
        for thread in threads:
            thread.start()
        log.warning(
            "worker started",
            extra={"models": sorted(self.runtime.models), "instance": settings.instance_id, "app_id": settings.app_id},
        )
        for config in self.runtime.models.values():
            log.warning("%s", describe_model(config), extra={"model": config.model_id})
        while not self._stopping.is_set():
            time.sleep(0.2)
        for thread in threads:
            thread.join(timeout=60)
        if self._errors:
            raise self._errors[0]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.warning("stopping on signal %s", signum)
        self.stop()


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the hot path (a worker process's settings only).

    Stage 1 allocates some 30 objects per event (the decoded dicts), most of them freed by
    reference counting; with CPython's defaults the collector ran every ~25 events, and its
    full passes walked every object made at startup (modules, config, profiles, clients).
    Freezing those and collecting the young generation every 10,000 allocations took the
    collector from about 4 µs to 0.6 µs of CPU per event (``load-tests/README.md``).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG)
