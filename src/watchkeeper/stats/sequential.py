"""Sequential drift detection: per-feature CUSUMs on bucket summaries, calibrated by bootstrap.

A :class:`CalibratedCusum` watches one feature. Values arrive in batches of any size; they
are cut into **buckets** of ``bucket_size`` present values (NaN / ±inf / None are missing
and skipped; the remainder of a batch is buffered, so alarms do not depend on batch
boundaries). Each full bucket gives standardised statistics against the reference:

* numeric features (values winsorised at the reference's 0.1% / 99.9% quantiles, which keeps
  single outliers beyond the reference from raising alarms the bootstrap cannot foresee):
  ``z_mean = (bucket mean − μ_ref) / (σ_ref/√b)`` and a variance statistic
  ``z_var = (log(s²_bucket/σ²_ref) − c) / s`` (``c``, ``s``: its bootstrap mean and sd);
* categorical features: per vocabulary category ``z_c = (n_c − b·p_c) / √(b·p_c·(1 − p_c))``
  (values outside the reference vocabulary, and missing values, are skipped: their rates are
  reported by the window monitor).

Each statistic feeds one-sided CUSUMs (Page 1954): ``S = max(0, S ± z − k)``, alarm when
``S >= h``. The allowance ``k`` is half the standardised shift the component is tuned for
(``mean_up``/``mean_down`` for each of ``mean_shifts`` σ, ``variance_up``/``variance_down`` for a
``variance_ratio`` change, ``category_up``/``category_down`` per category); several
allowances approximate a detector for an unknown shift size (Lorden 1971). After an alarm
all CUSUMs restart at 0 (the renewal the calibration assumes).

**Calibration** (:mod:`watchkeeper.stats.sequential_calibration`): thresholds ``h`` are chosen
so the expected run length between false alarms of the whole feature detector is
``target_arl_events``, by simulating the CUSUMs on buckets resampled from the reference
itself (no normality assumed; Cobb et al. 2021, arXiv:2108.00883, for the idea of
simulation-calibrated sequential thresholds) and extrapolating with Siegmund's (1985)
approximation. The feature budget is split evenly over components (Bonferroni). For a
model, give each of its ``F`` features ``target_arl_events = F × model target``
(:func:`feature_arl_target`).

References: E. S. Page (1954), "Continuous inspection schemes", Biometrika 41;
G. Lorden (1971), "Procedures for reacting to a change in distribution", Ann. Math. Stat. 42;
D. Siegmund (1985), *Sequential Analysis: Tests and Confidence Intervals*, Springer;
O. Cobb, A. Van Looveren & J. Klaise (2021), "Sequential multivariate change detection
with calibrated and memoryless false detection rates", arXiv:2108.00883.

Example:
    >>> rng = np.random.default_rng(0)
    >>> detector = CalibratedCusum.from_reference(rng.normal(size=5000), target_arl_events=1e5, seed=1)
    >>> detector.update(rng.normal(size=20_000)) is None
    True
    >>> hit = detector.update(rng.normal(loc=0.5, size=5_000))
    >>> hit.component, 20_000 < hit.event_index < 21_000
    ('mean_up', True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from watchkeeper.stats.categorical import CategoryEncoder
from watchkeeper.stats.sequential_calibration import calibrate_thresholds

__all__ = [
    "DEFAULT_FEATURE_ARL_EVENTS",
    "CalibratedCusum",
    "Detection",
    "SliceGroups",
    "feature_arl_target",
    "numeric_slice_sums",
]

FloatArray = npt.NDArray[np.float64]
Kind = Literal["numeric", "categorical"]

#: Default per-feature target: one false alarm per 10^6 events for a 22-feature model.
DEFAULT_FEATURE_ARL_EVENTS = 22_000_000.0
_STATE_VERSION = 1
_LOG_FLOOR = -30.0  # log variance ratio of a constant bucket
_CLIP_QUANTILES = (0.001, 0.999)  # numeric values are winsorised at these reference quantiles
_FIXED = float(2**20)  # fixed-point scale of the exact slice sums


def feature_arl_target(model_arl_events: float, n_features: int) -> float:
    """Per-feature ARL0 so ``n_features`` detectors give ``model_arl_events`` together (Bonferroni).

    >>> feature_arl_target(1e6, 22)
    22000000.0
    """
    if n_features < 1 or not model_arl_events > 0:
        raise ValueError("expected model_arl_events > 0 and n_features >= 1")
    return float(model_arl_events) * n_features


@dataclass(frozen=True)
class Detection:
    """An alarm.

    Attributes:
        event_index: events seen (including missing values) up to and including the event
            that completed the alarming bucket, counted since construction or :meth:`reset`.
        bucket_index: full buckets seen, same origin (the alarm is in this bucket).
        component: ``mean_up``, ``mean_down``, ``variance_up``, ``variance_down``,
            ``category_up`` or ``category_down``.
        statistic: CUSUM value at the alarm; ``threshold``: its ``h``.
        shift: the shift the component is tuned for (σ units; variance ratio for variance).
        category: the category, for categorical components.
    """

    event_index: int
    bucket_index: int
    component: str
    statistic: float
    threshold: float
    shift: float
    category: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass(frozen=True)
class _Component:
    name: str
    channel: int
    sign: float
    allowance: float
    threshold: float
    shift: float
    category: str | None = None


@dataclass(frozen=True)
class SliceGroups:
    """A batch grouped by slot (event-time slice), shared by :meth:`CalibratedCusum.slice_sums` of its columns.

    Attributes:
        slots: the slot of each event (int64).
        n_slots: the number of slots (rows of the sums).
        order: event positions sorted by slot (stable).
        starts: where each occupied slot begins in ``order``.
        used: the occupied slots, ascending (one per ``starts``).
    """

    slots: npt.NDArray[np.int64]
    n_slots: int
    order: npt.NDArray[np.intp]
    starts: npt.NDArray[np.intp]
    used: npt.NDArray[np.int64]

    @classmethod
    def of(cls, slots: npt.ArrayLike, n_slots: int) -> SliceGroups:
        """Group events by their ``slots`` (each in ``[0, n_slots)``)."""
        slot = np.asarray(slots, dtype=np.int64).ravel()
        order = np.argsort(slot, kind="stable")
        ordered = slot[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if slot.size else np.zeros(0, np.intp)
        return cls(slot, int(n_slots), order, starts, ordered[starts])


def numeric_slice_sums(
    detectors: Sequence[CalibratedCusum], values: npt.NDArray[np.float64], groups: SliceGroups
) -> npt.NDArray[np.int64]:
    """:meth:`CalibratedCusum.slice_sums` of several numeric detectors at once: ``(k, n_slots, 3)``.

    ``values`` is ``(k, n)``: row i for ``detectors[i]``. Rows ``[n, Σ round(z·2^20),
    Σ round(z²·2^20)]`` of the finite values per slot. The batch is summed in slot order with
    the missing values contributing zeros: the sums are of int64s, whose addition is exact
    and associative (wrapping included), so they equal sums over the present values alone
    in any order; the per-value arithmetic is the same float operations for one column or many.
    """
    k = len(detectors)
    out = np.zeros((k, groups.n_slots, 3), dtype=np.int64)
    if k == 0 or values.shape[1] == 0:
        return out
    x = np.ascontiguousarray(values)[:, groups.order]  # by slot
    finite = np.isfinite(x)
    complete = bool(finite.all())
    if not complete:
        x = np.where(finite, x, 0.0)  # any finite stand-in: its terms are zeroed below
    references = [d.reference for d in detectors]
    clips = np.asarray([r.get("clip", (-np.inf, np.inf)) for r in references], dtype=np.float64)
    if np.isfinite(clips).any():  # (clipping to ±inf leaves a finite value as it is)
        x = np.clip(x, clips[:, :1], clips[:, 1:])
    means = np.asarray([[r["mean"]] for r in references], dtype=np.float64)
    stds = np.asarray([[r["std"]] for r in references], dtype=np.float64)
    z = (x - means) / stds
    total = np.rint(z * _FIXED).astype(np.int64)
    squares = np.rint(z**2 * _FIXED).astype(np.int64)
    if not complete:
        total[~finite] = 0
        squares[~finite] = 0
    out[:, groups.used, 0] = np.add.reduceat(finite.astype(np.int64), groups.starts, axis=1)
    out[:, groups.used, 1] = np.add.reduceat(total, groups.starts, axis=1)
    out[:, groups.used, 2] = np.add.reduceat(squares, groups.starts, axis=1)
    return out


class CalibratedCusum:
    """Two-sided CUSUMs on bucket statistics of one feature; thresholds calibrated by bootstrap.

    Build with :meth:`from_reference`; feed batches with :meth:`update` (first alarm of the
    batch, or ``None``) or :meth:`process` (all alarms). State is JSON-able
    (:meth:`to_dict` / :meth:`from_dict`). See the module docstring for the method.
    """

    def __init__(
        self,
        kind: Kind,
        bucket_size: int,
        components: Sequence[_Component],
        reference: Mapping[str, Any],
        calibration: Mapping[str, Any] | None = None,
    ) -> None:
        if kind not in ("numeric", "categorical"):
            raise ValueError(f"kind={kind!r}: expected 'numeric' or 'categorical'")
        if bucket_size < 1:
            raise ValueError(f"bucket_size={bucket_size!r}: expected >= 1")
        self.kind: Kind = kind
        self.bucket_size = int(bucket_size)
        self.components: tuple[_Component, ...] = tuple(components)
        self.reference: dict[str, Any] = dict(reference)
        self.calibration: dict[str, Any] = dict(calibration or {})
        self._encoder = CategoryEncoder.from_dict(self.reference["encoder"]) if kind == "categorical" else None
        self._params = [(c.channel, c.sign, c.allowance, c.threshold) for c in self.components]
        self.reset()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_reference(
        cls,
        reference_values: Iterable[Any],
        kind: Kind = "numeric",
        *,
        target_arl_events: float = DEFAULT_FEATURE_ARL_EVENTS,
        bucket_size: int = 50,
        mean_shifts: Sequence[float] = (0.1, 0.25),
        variance_ratio: float | None = 1.5,
        category_shifts: Sequence[float] = (0.2,),
        max_categories: int = 20,
        reference_uncertainty: bool = True,
        seed: int = 0,
        pool_size: int = 20_000,
        n_paths: int = 1000,
        n_steps: int = 1000,
    ) -> CalibratedCusum:
        """Fit the reference summaries and calibrate thresholds to ``target_arl_events``.

        Args:
            reference_values: the feature's reference sample (numeric: floats, NaN missing;
                categorical: any values, compared as strings, None/NaN missing).
            kind: ``"numeric"`` or ``"categorical"``.
            target_arl_events: expected events between false alarms of this feature's detector.
            bucket_size: present values per bucket (``b``).
            mean_shifts: mean shifts (σ_ref units) the mean CUSUMs are tuned for (k = δ√b/2).
            variance_ratio: variance ratio the variance CUSUMs are tuned for (None: no
                variance components; needs ``bucket_size >= 2``).
            category_shifts: category proportion shifts in units of the indicator's σ,
                √(p(1−p)) (0.2 ≈ 40% → 30%).
            max_categories: vocabulary size; rarer reference categories are pooled (OTHER).
            reference_uncertainty: calibrate the false-alarm rate averaged over the sampling
                error of the reference estimates (recommended) instead of treating them as exact.
            seed: seed of the bootstrap and simulation (results are deterministic).
            pool_size, n_paths, n_steps: bootstrap pool of buckets and simulation size.
        """
        if not target_arl_events > bucket_size:
            raise ValueError(f"target_arl_events={target_arl_events!r}: expected > bucket_size")
        rng = np.random.default_rng(seed)
        b = int(bucket_size)
        components: list[_Component] = []
        tau_by_channel: list[float]
        reference: dict[str, Any]
        if kind == "numeric":
            values = np.asarray(
                list(reference_values) if not isinstance(reference_values, np.ndarray) else reference_values,
                dtype=np.float64,
            ).ravel()
            values = values[np.isfinite(values)]
            n = values.size
            if n < 2:
                raise ValueError("numeric reference: expected at least 2 finite values")
            # winsorise at the reference's extreme quantiles: the bootstrap cannot produce values
            # beyond the reference, so unclipped heavy tails would make false alarms of single outliers
            low, high = (float(q) for q in np.quantile(values, _CLIP_QUANTILES))
            values = np.clip(values, low, high) if high > low else values
            mu = float(values.mean())
            sigma = float(values.std())
            if not sigma > 0:
                sigma = 1e-9 * max(1.0, abs(mu))
            reference = {
                "mean": mu,
                "std": sigma,
                "n": n,
                "var_center": 0.0,
                "var_scale": 1.0,
            }
            if high > low:  # a constant reference is not clipped: any other value is drift
                reference["clip"] = [low, high]
            bucket_values = values[rng.integers(0, n, size=(pool_size, b))]
            use_var = variance_ratio is not None and b >= 2
            if use_var:
                raw = _log_variance_ratio(bucket_values, sigma)
                reference["var_center"] = float(raw.mean())
                reference["var_scale"] = float(raw.std()) or 1.0
            channels_probe = cls("numeric", b, [], reference)
            pool = channels_probe._statistics(bucket_values)
            kurtosis = float(np.mean(((values - mu) / sigma) ** 4))
            tau_by_channel = [
                math.sqrt(b / n),
                math.sqrt(max(kurtosis - 1.0, 0.0) / n) / reference["var_scale"],
            ]
            for shift in mean_shifts:
                k = shift * math.sqrt(b) / 2.0
                components += [
                    _Component("mean_up", 0, 1.0, k, 0.0, float(shift)),
                    _Component("mean_down", 0, -1.0, k, 0.0, float(shift)),
                ]
            if use_var:
                assert variance_ratio is not None
                k = abs(math.log(variance_ratio)) / reference["var_scale"] / 2.0
                components += [
                    _Component("variance_up", 1, 1.0, k, 0.0, float(variance_ratio)),
                    _Component("variance_down", 1, -1.0, k, 0.0, float(variance_ratio)),
                ]
        elif kind == "categorical":
            raw_values = reference_values if isinstance(reference_values, np.ndarray) else list(reference_values)
            encoder = CategoryEncoder.from_reference(raw_values, max_categories=max_categories)
            codes = encoder.encode(raw_values)
            codes = codes[codes < len(encoder.vocabulary)]
            n = codes.size
            if n < 1:
                raise ValueError("categorical reference: expected at least 1 present value")
            probs = np.bincount(codes, minlength=len(encoder.vocabulary)) / n
            reference = {"encoder": encoder.to_dict(), "probabilities": probs.tolist(), "n": n}
            channels_probe = cls("categorical", b, [], reference)
            pool = channels_probe._statistics(codes[rng.integers(0, n, size=(pool_size, b))])
            tau_by_channel = [math.sqrt(b / n)] * len(encoder.vocabulary)
            for c, (name, p) in enumerate(zip(encoder.vocabulary, probs, strict=True)):
                if not 0 < p < 1:
                    continue
                for shift in category_shifts:
                    k = shift * math.sqrt(b) / 2.0
                    components += [
                        _Component("category_up", c, 1.0, k, 0.0, float(shift), name),
                        _Component("category_down", c, -1.0, k, 0.0, float(shift), name),
                    ]
        else:
            raise ValueError(f"kind={kind!r}: expected 'numeric' or 'categorical'")

        calibration: dict[str, Any] = {"target_arl_events": float(target_arl_events), "seed": seed}
        if components:
            channel = np.array([c.channel for c in components], dtype=np.int64)
            sign = np.array([c.sign for c in components])
            allowance = np.array([c.allowance for c in components])
            increments = pool[:, channel] * sign - allowance
            tau = np.array([tau_by_channel[c] for c in channel]) if reference_uncertainty else np.zeros(len(components))
            target_buckets = target_arl_events / b * len(components)
            result = calibrate_thresholds(
                increments, tau, channel, sign, target_buckets, rng, n_paths=n_paths, n_steps=n_steps
            )
            components = [
                _Component(c.name, c.channel, c.sign, c.allowance, h, c.shift, c.category)
                for c, h in zip(components, result.thresholds, strict=True)
            ]
            calibration.update(result.to_dict())
            calibration["reference_uncertainty"] = bool(reference_uncertainty)
        return cls(kind, b, components, reference, calibration)

    # ------------------------------------------------------------------ statistics
    def _statistics(self, buckets: np.ndarray) -> FloatArray:
        """(n_buckets, n_channels) standardised statistics of full buckets (rows)."""
        b = self.bucket_size
        ref = self.reference
        if self.kind == "numeric":
            x = np.asarray(buckets, dtype=np.float64)
            if "clip" in ref:
                x = np.clip(x, ref["clip"][0], ref["clip"][1])
            z_mean = (x.mean(axis=1) - ref["mean"]) / (ref["std"] / math.sqrt(b))
            if b < 2:
                return np.asarray(z_mean[:, None], dtype=np.float64)
            z_var = (_log_variance_ratio(x, ref["std"]) - ref["var_center"]) / ref["var_scale"]
            return np.asarray(np.stack([z_mean, z_var], axis=1), dtype=np.float64)
        probs = np.asarray(ref["probabilities"], dtype=np.float64)
        k = probs.size
        codes = np.asarray(buckets, dtype=np.int64)
        rows = codes.shape[0]
        counts = np.bincount((codes + k * np.arange(rows)[:, None]).ravel(), minlength=rows * k)
        counts = counts.reshape(rows, k).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (counts - b * probs) / np.sqrt(b * probs * (1.0 - probs))
        return np.asarray(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0), dtype=np.float64)

    # ------------------------------------------------------------------ sufficient statistics
    @property
    def n_sums(self) -> int:
        """Length of a :meth:`slice_sums` row: 3 for numeric columns, the vocabulary size otherwise."""
        return 3 if self.kind == "numeric" else len(self.reference["probabilities"])

    def slice_sums(
        self,
        values: Any,
        slots: npt.ArrayLike,
        n_slots: int,
        groups: SliceGroups | None = None,
        codes: npt.NDArray[np.int64] | None = None,
    ) -> npt.NDArray[np.int64]:
        """Exact, mergeable sufficient statistics of the values per slot (event-time slice).

        Numeric rows are ``[n, Σ round(z·2^20), Σ round(z²·2^20)]`` of the present values
        standardised against the reference (``z = (clip(x) − μ)/σ``); categorical rows are
        the counts per reference category. Integers, so that merging slices from any
        partitions in any order gives the same bucket statistics bit for bit.

        ``groups`` (:meth:`SliceGroups.of` the same ``slots``) lets the columns of one batch
        share the grouping by slot instead of sorting the slots once per column; ``codes``
        (categorical: the values encoded by an encoder equal to this detector's) spares
        encoding them again.
        """
        if groups is None:
            groups = SliceGroups.of(slots, n_slots)
        if self.kind == "categorical":
            return self._category_sums(values, groups, codes)
        column = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64).ravel()
        sums: npt.NDArray[np.int64] = numeric_slice_sums([self], column[None, :], groups)[0]
        return sums

    def _category_sums(
        self, values: Any, groups: SliceGroups, codes: npt.NDArray[np.int64] | None
    ) -> npt.NDArray[np.int64]:
        """Counts per slot and reference category (values outside the vocabulary are skipped)."""
        k = self.n_sums
        if codes is None:
            present, positions, _ = self._present(values)
        else:
            positions = np.flatnonzero(codes < k)
            present = codes[positions]
        if present.size == 0:
            return np.zeros((groups.n_slots, k), dtype=np.int64)
        flat = np.bincount(groups.slots[positions] * k + present.astype(np.int64), minlength=groups.n_slots * k)
        return flat.reshape(groups.n_slots, k).astype(np.int64)

    def statistics_from_sums(self, sums: Sequence[int]) -> list[float]:
        """The standardised statistics row of a bucket summarised by merged :meth:`slice_sums`.

        A bucket holds at least ``bucket_size`` present values (``n``, whole slices); the
        statistics are standardised for its actual ``n``: ``z_mean = Σz/√n``, the log variance
        ratio's centre and scale rescaled by ``(b−1)/(n−1)`` (both are O(1/n) for any
        distribution with finite kurtosis), ``z_c = (n_c − n·p_c)/√(n·p_c(1−p_c))``. With
        ``n == bucket_size`` these are exactly the calibrated statistics.
        """
        if self.kind == "categorical":
            counts = np.asarray(sums, dtype=np.float64)
            n = counts.sum()
            probs = np.asarray(self.reference["probabilities"], dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = (counts - n * probs) / np.sqrt(n * probs * (1.0 - probs))
            return [float(v) for v in np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)]
        n, total, squares = int(sums[0]), int(sums[1]) / _FIXED, int(sums[2]) / _FIXED
        if n < 1:
            return [0.0, 0.0] if self.bucket_size >= 2 else [0.0]
        z_mean = total / math.sqrt(n)
        if self.bucket_size < 2:
            return [z_mean]
        ref = self.reference
        variance = max((squares - total * total / n) / (n - 1), 0.0) if n > 1 else 0.0
        log_ratio = max(math.log(variance), _LOG_FLOOR) if variance > 0 else _LOG_FLOOR
        shrink = (self.bucket_size - 1) / (n - 1) if n > 1 else 1.0
        z_var = (log_ratio - ref["var_center"] * shrink) / (ref["var_scale"] * math.sqrt(shrink))
        return [z_mean, z_var]

    # ------------------------------------------------------------------ streaming
    def reset(self) -> None:
        """Forget the stream: CUSUMs at 0, no buffered values, counters at 0."""
        self.sums: list[float] = [0.0] * len(self.components)
        self._buffer: list[float] | list[int] = []
        self.n_events = 0
        self.n_buckets = 0
        self.n_alarms = 0

    def _present(self, values: Any) -> tuple[np.ndarray, npt.NDArray[np.intp], int]:
        """(present values or codes, their positions in the batch, batch length)."""
        if self.kind == "numeric":
            x = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
            x = x.ravel()
            positions = np.flatnonzero(np.isfinite(x))
            return x[positions], positions, x.size
        assert self._encoder is not None
        codes = self._encoder.encode(values)
        positions = np.flatnonzero(codes < len(self._encoder.vocabulary))
        return codes[positions], positions, codes.size

    def bucket_statistics(self, values: Iterable[Any]) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """First half of :meth:`process`: statistics of the buckets this batch completes.

        Values left over from earlier batches are buffered, so the buckets do not depend on
        batch boundaries. Returns the (n_buckets, n_channels) statistics and, per bucket,
        the stream index (1-based) of the event that completed it. In the worker, stage 1
        calls this and ships the small statistics rows to stage 2, which calls :meth:`advance`.
        """
        present, positions, length = self._present(values)
        b = self.bucket_size
        buffered = len(self._buffer)
        dtype = np.float64 if self.kind == "numeric" else np.int64
        combined = np.concatenate([np.asarray(self._buffer, dtype=dtype), present])
        n_full = combined.size // b
        start_events = self.n_events
        self.n_events += length
        self._buffer = combined[n_full * b :].tolist()
        if n_full == 0:
            return np.zeros((0, 0), dtype=np.float64), np.zeros(0, dtype=np.int64)
        rows = self._statistics(combined[: n_full * b].reshape(n_full, b))
        last = positions[np.arange(1, n_full + 1) * b - 1 - buffered]
        return rows, (start_events + last + 1).astype(np.int64)

    def advance(self, rows: npt.ArrayLike, event_indices: npt.ArrayLike | None = None) -> list[Detection]:
        """Second half of :meth:`process`: the CUSUM recursion over bucket statistics, in order.

        ``event_indices`` label the detections; without them a bucket's index times the
        bucket size stands in (the worker's stage 2, which sees buckets from many partitions).
        """
        table = np.asarray(rows, dtype=np.float64)
        n_full = table.shape[0] if table.ndim == 2 else 0
        if n_full == 0 or not self.components:
            self.n_buckets += n_full
            return []
        if event_indices is None:
            indices = (self.n_buckets + np.arange(1, n_full + 1)) * self.bucket_size
        else:
            indices = np.asarray(event_indices, dtype=np.int64)
        sums = self.sums
        params = self._params
        detections: list[Detection] = []
        for i, row in enumerate(table.tolist()):
            fired = -1
            ratio = 0.0
            for j, (channel, sign, allowance, threshold) in enumerate(params):
                s = sums[j] + sign * row[channel] - allowance
                if s < 0.0:
                    s = 0.0
                sums[j] = s
                if s >= threshold and s / threshold > ratio:
                    fired, ratio = j, s / threshold
            if fired >= 0:
                c = self.components[fired]
                detections.append(
                    Detection(
                        event_index=int(indices[i]),
                        bucket_index=self.n_buckets + i + 1,
                        component=c.name,
                        statistic=sums[fired],
                        threshold=c.threshold,
                        shift=c.shift,
                        category=c.category,
                    )
                )
                sums[:] = [0.0] * len(sums)
        self.n_buckets += n_full
        self.n_alarms += len(detections)
        return detections

    def process(self, values: Iterable[Any]) -> list[Detection]:
        """Consume a batch; return every alarm in it (CUSUMs restart at 0 after each)."""
        rows, indices = self.bucket_statistics(values)
        return self.advance(rows, indices)

    def update(self, values: Iterable[Any]) -> Detection | None:
        """Consume a batch; return its first alarm, or None (see :meth:`process`)."""
        detections = self.process(values)
        return detections[0] if detections else None

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-able configuration, calibration and stream state."""
        return {
            "version": _STATE_VERSION,
            "kind": self.kind,
            "bucket_size": self.bucket_size,
            "reference": self.reference,
            "components": [asdict(c) for c in self.components],
            "calibration": self.calibration,
            "state": {
                "sums": list(self.sums),
                "buffer": list(self._buffer),
                "n_events": self.n_events,
                "n_buckets": self.n_buckets,
                "n_alarms": self.n_alarms,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibratedCusum:
        """Inverse of :meth:`to_dict`."""
        if data.get("version") != _STATE_VERSION:
            raise ValueError(f"state version {data.get('version')!r}: expected {_STATE_VERSION}")
        detector = cls(
            data["kind"],
            int(data["bucket_size"]),
            [_Component(**c) for c in data["components"]],
            data["reference"],
            data.get("calibration"),
        )
        state = data["state"]
        detector.sums = [float(s) for s in state["sums"]]
        if len(detector.sums) != len(detector.components):
            raise ValueError("state: one CUSUM sum per component expected")
        detector._buffer = list(state["buffer"])
        detector.n_events = int(state["n_events"])
        detector.n_buckets = int(state["n_buckets"])
        detector.n_alarms = int(state["n_alarms"])
        return detector

    def __repr__(self) -> str:
        names = sorted({c.name for c in self.components})
        return f"CalibratedCusum(kind={self.kind!r}, bucket_size={self.bucket_size}, components={names})"


def _log_variance_ratio(buckets: FloatArray, sigma: float) -> FloatArray:
    """log(s²/σ²) per row (sample variance, ddof=1), floored for constant buckets."""
    var = buckets.var(axis=1, ddof=1)
    with np.errstate(divide="ignore"):
        out = np.log(var / sigma**2)
    return np.asarray(np.maximum(out, _LOG_FLOOR), dtype=np.float64)
