"""Synthetic binary-classification streams for the label monitors (accuracy, calibration, fairness).

Importable by tests and used by ``load-tests/label_quality.py``::

    import sys; sys.path.insert(0, "load-tests")
    from label_scenarios import generate, model_config
    events = generate("group_fpr_rise", seed=1, windows=20)   # list of event dicts, in arrival order

Every scenario is one model, ``label-quality``: one prediction per second of event time,
hourly tumbling windows aligned to the epoch (3,600 predictions each), 12 numeric
features (N(0, 1)) and 3 categorical ones (5 categories, 40/15/15/15/15 %) that are pure
noise (they only have to be valid), a sensitive attribute ``group`` = A / B / C drawn
with 70 / 25 / 5 %, ``prediction.score`` and ``prediction.label`` (``"1"`` when the score
is >= 0.5, else ``"0"``).

The base model is calibrated by construction
---------------------------------------------
s ~ Beta(a, b) and the true label y ~ Bernoulli(s), so P(y = 1 | s) = s exactly. The same
model, seen class by class, is y ~ Bernoulli(pi) with pi = a / (a + b), s | y = 1 ~
Beta(a + 1, b) and s | y = 0 ~ Beta(a, b + 1) (Bayes: s·Beta(a, b) ∝ Beta(a + 1, b)). So,
with I the regularised incomplete beta function,

    FPR = P(s >= 1/2 | y = 0) = 1 - I_{1/2}(a, b + 1)
    FNR = P(s <  1/2 | y = 1) = I_{1/2}(a + 1, b)
    accuracy = 1 - pi·FNR - (1 - pi)·FPR

and (a, b) are solved so that **accuracy = 0.77 and FPR = 0.24 exactly** (a ≈ 0.837,
b ≈ 0.796, pi ≈ 0.513, TPR ≈ 0.780; :func:`design` gives the numbers). Every group gets
the same model, so in expectation there is no disparity between groups at all.

Outcomes
--------
Each prediction's outcome (``{"prediction_id", "model_id", "timestamp", "label"}``) is
stamped ``prediction time + delay``, delay ~ U(0, 6 h); 3 % of the outcomes never arrive,
2 % of those that do arrive twice (the duplicate is the same event, redelivered U(0, 10 min)
later). The stream is the predictions and outcomes merged in arrival order (= event time,
except for the redelivered duplicates; a prediction before an outcome at the same time),
so outcomes are interleaved with the predictions of later windows.

Scenarios (the change, if any, applies to the predictions from the start of window
``change_window`` on, default :data:`CHANGE_WINDOW`; nothing else changes)
-----------------------------------------------------------------------------------------
* ``stationary``: the base model throughout.
* ``accuracy_drop``: the model stays calibrated but gets less sharp: s ~ Beta(c·a, c·b)
  with c solved so that accuracy = 0.72 exactly (0.77 → 0.72, −5 points). The base rate
  pi = a / (a + b) does not move; the score distribution does (a drift of
  ``prediction.score`` is expected and counted as drift, not as a label alert); all
  groups alike (no disparity).
* ``group_fpr_rise``: for group B's negatives only, logit(s) += Δ, with Δ solved so that
  P(s >= 1/2 | y = 0, B) = 0.45 (was 0.24): group B's FPR 0.24 → 0.45 exactly, its TPR,
  base rate and the other groups unchanged. (B's selection rate rises by
  (1 - pi)·0.21 ≈ 0.10, so demographic parity moves too; B is no longer calibrated.)
* ``calibration_break``: the model sends s' = sigmoid(k·logit(s)), k = 2.5 (pushed towards
  0 and 1), while y is still drawn from the original s. Since s' >= 1/2 ⟺ s >= 1/2 and
  the map is increasing, the predicted labels, accuracy, F1, FPR, ROC AUC and every
  group rate are exactly unchanged; only calibration (ECE, log loss, Brier) breaks.
* ``label_delay_shift``: outcome delays U(0, 6 h) → U(3 h, 12 h) for the predictions from
  the change on; the model is unchanged (only label coverage and timing change). With
  the benchmark's 7 h label horizon about half of these outcomes now come too late.
* ``small_group_noise``: group C (5 % on average) is over-dispersed but never changes in
  expectation: its share of each window is 5 % × Gamma(2, 1/2) (bursty traffic, capped
  at 30 %) and its rows come in sessions of 1 + Poisson(4) consecutive predictions that
  share one score and one outcome label (repeat users). Each row's (s, y) is still
  Beta(a, b) / Bernoulli(s), so C's expected selection rate, TPR, FPR and calibration are
  the population's: any alert is false. Applies to the whole stream (no change point).

:func:`iter_windows` produces the same stream window by window (bounded memory, with the
per-prediction truth as numpy arrays); :func:`generate` is ``iter_windows`` flattened.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

__all__ = [
    "CHANGE_WINDOW",
    "SCENARIOS",
    "Chunk",
    "Design",
    "design",
    "generate",
    "iter_windows",
    "model_config",
    "reference_columns",
    "window_index",
]

MODEL_ID = "label-quality"
WINDOW = 3600  # seconds; one prediction per second
START = 1_767_225_600  # 2026-01-01T00:00:00Z, a multiple of WINDOW
HORIZON = 7 * 3600  # accuracy.label_horizon of the benchmark's config
CHANGE_WINDOW = 12  # the first changed window (after the ~9 windows of accuracy warm-up)
NUMERIC = [f"num_{i:02d}" for i in range(12)]
CATEGORICAL = ["cat_0", "cat_1", "cat_2"]
CATEGORIES = ["alpha", "bravo", "charlie", "delta", "echo"]
CATEGORY_P = [0.40, 0.15, 0.15, 0.15, 0.15]
GROUPS = ["A", "B", "C"]
GROUP_P = [0.70, 0.25, 0.05]

BASE_ACCURACY = 0.77
BASE_FPR = 0.24
DROP_ACCURACY = 0.72
GROUP_B_FPR = 0.45
CALIBRATION_K = 2.5
DELAY = (0.0, 6 * 3600.0)
SHIFTED_DELAY = (3 * 3600.0, 12 * 3600.0)
LOST = 0.03  # outcomes that never arrive
DUPLICATED = 0.02  # of the arriving outcomes, redelivered once
REDELIVERY = 600.0  # a duplicate arrives up to this many seconds after the original
SESSION_EXTRA = 4.0  # small_group_noise: a C session has 1 + Poisson(4) predictions
C_SHARE_SHAPE = 2.0  # small_group_noise: C's share of a window is 5 % × Gamma(2, 1/2)
C_SHARE_CAP = 0.30
TAIL_STEP = 60  # seconds between the predictions of the sparse tail windows

SCENARIOS: dict[str, str] = {
    "stationary": "none",
    "accuracy_drop": "accuracy",
    "group_fpr_rise": "fairness",
    "small_group_noise": "none",
    "calibration_break": "calibration",
    "label_delay_shift": "none",
}
"""Scenario → the label-alert family that should detect it ("none": every label alert is false)."""


# -- the model's parameters, solved exactly --------------------------------------------------
@dataclass(frozen=True)
class Design:
    a: float
    b: float
    drop_scale: float  # accuracy_drop: Beta(c·a, c·b)
    fpr_shift: float  # group_fpr_rise: Δ added to logit(s) of group B's negatives
    quantities: dict[str, float] = field(default_factory=dict)


def _beta_sf_half(a: float, b: float) -> float:
    from scipy.special import betainc

    return float(1.0 - betainc(a, b, 0.5))


def _rates(a: float, b: float) -> tuple[float, float, float, float]:
    """(accuracy, FPR, TPR, base rate) of the calibrated Beta(a, b) model."""
    pi = a / (a + b)
    fpr = _beta_sf_half(a, b + 1)
    tpr = _beta_sf_half(a + 1, b)
    return pi * tpr + (1 - pi) * (1 - fpr), fpr, tpr, pi


@cache
def design() -> Design:
    """Solve the Beta parameters, the sharpness drop and the logit shift (scipy)."""
    from scipy.optimize import brentq, fsolve
    from scipy.stats import beta

    def equations(x: np.ndarray) -> list[float]:
        acc, fpr, _, _ = _rates(math.exp(x[0]), math.exp(x[1]))
        return [acc - BASE_ACCURACY, fpr - BASE_FPR]

    la, lb = fsolve(equations, [0.0, 0.0], xtol=1e-13)
    a, b = math.exp(la), math.exp(lb)
    scale = brentq(lambda c: _rates(c * a, c * b)[0] - DROP_ACCURACY, 1.0, 100.0, xtol=1e-13)
    threshold = float(beta(a, b + 1).isf(GROUP_B_FPR))  # P(s >= threshold | y = 0) = 0.45
    shift = -math.log(threshold / (1 - threshold))
    acc, fpr, tpr, pi = _rates(a, b)
    acc2, fpr2, tpr2, _ = _rates(scale * a, scale * b)
    return Design(
        a,
        b,
        scale,
        shift,
        {
            "accuracy": acc,
            "fpr": fpr,
            "tpr": tpr,
            "base_rate": pi,
            "selection_rate": pi * tpr + (1 - pi) * fpr,
            "accuracy_after_drop": acc2,
            "fpr_after_drop": fpr2,
            "tpr_after_drop": tpr2,
            "group_b_fpr_after": float(beta(a, b + 1).sf(threshold)),
            "group_b_selection_after": pi * tpr + (1 - pi) * GROUP_B_FPR,
        },
    )


# -- configuration and reference --------------------------------------------------------------
def model_config(**accuracy: Any) -> Any:
    """The benchmark's models config: defaults everywhere but the window, horizon and attribute."""
    from watchkeeper.config import parse_config

    features = {name: "numeric" for name in NUMERIC} | {name: "categorical" for name in CATEGORICAL}
    return parse_config(
        {
            "models": [
                {
                    "model_id": MODEL_ID,
                    "task": "binary",
                    "features": features,
                    "window": {"size": "1h"},
                    "sensitive_attributes": ["group"],
                    "accuracy": {"label_horizon": "7h", **accuracy},
                }
            ]
        }
    )


def reference_columns(seed: int, rows: int) -> dict[str, tuple[str, Any]]:
    """A reference sample of the stationary model, as ``watchkeeper profile build`` reads a CSV:
    the features plus ``prediction.score`` and ``prediction.label`` (the columns
    ``ReferenceProfile.build`` takes)."""
    from watchkeeper.monitor.profile import PREDICTION_LABEL, PREDICTION_SCORE

    rng = np.random.default_rng([seed, 99])
    d = design()
    numeric = rng.standard_normal((rows, len(NUMERIC)))
    cats = rng.choice(len(CATEGORIES), size=(rows, len(CATEGORICAL)), p=CATEGORY_P)
    score = rng.beta(d.a, d.b, rows)
    names = np.asarray(CATEGORIES, dtype=object)
    columns: dict[str, tuple[str, Any]] = {n: ("numeric", numeric[:, j]) for j, n in enumerate(NUMERIC)}
    columns |= {n: ("categorical", list(names[cats[:, j]])) for j, n in enumerate(CATEGORICAL)}
    columns[PREDICTION_SCORE] = ("numeric", score)
    columns[PREDICTION_LABEL] = ("categorical", ["1" if v >= 0.5 else "0" for v in score.tolist()])
    return columns


def window_index(epoch: float) -> int:
    return int((epoch - START) // WINDOW)


# -- the stream ---------------------------------------------------------------------------------
@dataclass
class Chunk:
    """The events that arrive during one window (the last chunk: the outcomes still due), and
    the truth about the window's predictions."""

    window: int  # -1 for the trailing outcomes
    events: list[dict[str, Any]]
    event_times: np.ndarray  # each event's own timestamp, in arrival order
    # the window's predictions (empty in the trailing chunk):
    times: np.ndarray
    scores: np.ndarray  # as sent
    predicted: np.ndarray  # 0/1
    truth: np.ndarray  # 0/1
    groups: np.ndarray  # 0/1/2 = A/B/C
    arrives: np.ndarray  # bool: its outcome arrives (at least once)
    delays: np.ndarray  # seconds


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def _groups_and_scores(
    rng: np.random.Generator, n: int, scenario: str, d: Design, changed: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(groups, score the label is drawn from, for small_group_noise the row whose score and
    label each row shares: the first of its session) of one window."""
    if scenario == "small_group_noise":
        share = min(C_SHARE_CAP, GROUP_P[2] * rng.gamma(C_SHARE_SHAPE, 1 / C_SHARE_SHAPE))
        p = [GROUP_P[0] * (1 - share) / (1 - GROUP_P[2]), GROUP_P[1] * (1 - share) / (1 - GROUP_P[2]), share]
        groups = rng.choice(3, size=n, p=p)
    else:
        groups = rng.choice(3, size=n, p=GROUP_P)
    scale = d.drop_scale if scenario == "accuracy_drop" and changed else 1.0
    truth_score = rng.beta(scale * d.a, scale * d.b, n)
    leader = None
    if scenario == "small_group_noise":  # C's rows come in sessions sharing one score and one label
        leader = np.arange(n)
        rows = np.flatnonzero(groups == 2)
        if rows.size:
            lengths = 1 + rng.poisson(SESSION_EXTRA, size=rows.size)
            session = np.repeat(np.arange(rows.size), lengths)[: rows.size]
            leader[rows] = rows[np.searchsorted(session, session)]
            truth_score = truth_score[leader]
    return groups, truth_score, leader


def _window(
    rng: np.random.Generator, w: int, scenario: str, change_window: int, d: Design, sparse: bool
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    step = TAIL_STEP if sparse else 1
    n = WINDOW // step
    changed = scenario != "small_group_noise" and scenario != "stationary" and w >= change_window
    times = START + w * WINDOW + step * np.arange(n, dtype=np.float64)
    groups, truth_score, leader = _groups_and_scores(rng, n, scenario, d, changed)
    truth = (rng.random(n) < truth_score).astype(np.int8)
    if leader is not None:  # one label per session: its first row's draw
        truth = truth[leader]
    sent = truth_score.copy()
    if changed and scenario == "group_fpr_rise":
        b_neg = (groups == 1) & (truth == 0)
        sent[b_neg] = _sigmoid(_logit(sent[b_neg]) + d.fpr_shift)
    elif changed and scenario == "calibration_break":
        sent = _sigmoid(CALIBRATION_K * _logit(sent))
    predicted = (sent >= 0.5).astype(np.int8)
    low, high = SHIFTED_DELAY if changed and scenario == "label_delay_shift" else DELAY
    delays = rng.uniform(low, high, n)
    arrives = rng.random(n) >= LOST
    duplicated = arrives & (rng.random(n) < DUPLICATED)
    redelivery = rng.uniform(0.0, REDELIVERY, n)
    numeric = rng.standard_normal((n, len(NUMERIC))).tolist()
    cats = np.asarray(CATEGORIES, dtype=object)[rng.choice(len(CATEGORIES), size=(n, len(CATEGORICAL)), p=CATEGORY_P)]
    cat_rows = cats.tolist()
    group_names = np.asarray(GROUPS, dtype=object)[groups].tolist()
    labels = ["1" if p else "0" for p in predicted.tolist()]
    first = w * WINDOW  # event ids p<second of the stream>: unique, whatever the step
    predictions = []
    for i, (t, s, label, num, cat, g) in enumerate(
        zip(times.tolist(), sent.tolist(), labels, numeric, cat_rows, group_names, strict=True)
    ):
        features: dict[str, Any] = dict(zip(NUMERIC, num, strict=True))
        features.update(zip(CATEGORICAL, cat, strict=True))
        predictions.append(
            {
                "event_id": f"p{first + i * step}",
                "model_id": MODEL_ID,
                "model_version": "1",
                "timestamp": t,
                "features": features,
                "prediction": {"label": label, "score": s},
                "attributes": {"group": g},
            }
        )
    truth_arrays = {
        "times": times,
        "scores": sent,
        "predicted": predicted,
        "truth": truth,
        "groups": groups.astype(np.int8),
        "arrives": arrives,
        "delays": delays,
        "duplicated": duplicated,
        "redelivery": redelivery,
    }
    return truth_arrays, predictions


def iter_windows(
    scenario: str, seed: int, windows: int, change_window: int = CHANGE_WINDOW, tail: int = 0
) -> Iterator[Chunk]:
    """The scenario's stream, one chunk per window of predictions, then one chunk of the
    outcomes still due after the last prediction.

    ``tail`` windows follow the ``windows`` full ones with one prediction every
    :data:`TAIL_STEP` seconds (same model and outcomes): they move the event time (the
    watermark) on while the last full windows' outcomes arrive, at 1/60 of the cost.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario {scenario!r}: expected one of {list(SCENARIOS)}")
    d = design()
    rng = np.random.default_rng([seed, list(SCENARIOS).index(scenario)])
    # outcomes not yet delivered: arrival, outcome time, prediction index, label
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for w in range(windows + tail):
        truth, predictions = _window(rng, w, scenario, change_window, d, sparse=w >= windows)
        index = w * WINDOW + np.arange(0, WINDOW, WINDOW // len(predictions))
        keep = truth["arrives"]
        out_time = truth["times"] + truth["delays"]
        dup = truth["duplicated"]
        pending.append((out_time[keep], out_time[keep], index[keep], truth["truth"][keep]))
        pending.append((out_time[dup] + truth["redelivery"][dup], out_time[dup], index[dup], truth["truth"][dup]))
        end = START + (w + 1) * WINDOW
        arrival, o_time, o_index, o_label = (np.concatenate(parts) for parts in zip(*pending, strict=True))
        due = arrival < end
        pending = [(arrival[~due], o_time[~due], o_index[~due], o_label[~due])]
        events, times = _merge(predictions, truth["times"], arrival[due], o_time[due], o_index[due], o_label[due])
        yield Chunk(
            w,
            events,
            times,
            truth["times"],
            truth["scores"],
            truth["predicted"],
            truth["truth"],
            truth["groups"],
            truth["arrives"],
            truth["delays"],
        )
    if pending:
        arrival, o_time, o_index, o_label = pending[0]
        events, times = _merge([], np.zeros(0), arrival, o_time, o_index, o_label)
        empty = np.zeros(0)
        yield Chunk(
            -1,
            events,
            times,
            empty,
            empty,
            empty.astype(np.int8),
            empty.astype(np.int8),
            empty.astype(np.int8),
            empty.astype(bool),
            empty,
        )


def _merge(
    predictions: list[dict[str, Any]],
    p_times: np.ndarray,
    arrival: np.ndarray,
    o_time: np.ndarray,
    o_index: np.ndarray,
    o_label: np.ndarray,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Predictions and outcomes in arrival order (a prediction first at equal times)."""
    outcomes = [
        {"prediction_id": f"p{i}", "model_id": MODEL_ID, "timestamp": t, "label": "1" if y else "0"}
        for i, t, y in zip(o_index.tolist(), o_time.tolist(), o_label.tolist(), strict=True)
    ]
    items = predictions + outcomes
    keys = np.concatenate([p_times, arrival])
    kinds = np.concatenate([np.zeros(len(predictions)), np.ones(len(outcomes))])
    order = np.lexsort((kinds, keys))
    own = np.concatenate([p_times, o_time])[order]
    return [items[i] for i in order.tolist()], own


def generate(
    scenario: str, seed: int, windows: int, change_window: int = CHANGE_WINDOW, tail: int = 0
) -> list[dict[str, Any]]:
    """All events of ``windows`` windows of predictions (plus ``tail`` sparse ones, see
    :func:`iter_windows`) and their outcomes, in arrival order."""
    chunks = iter_windows(scenario, seed, windows, change_window, tail)
    return [event for chunk in chunks for event in chunk.events]


def check(windows: int = 24, seed: int = 0) -> dict[str, dict[str, float]]:
    """Empirical rates of each scenario before and after its change (a sanity check of the design)."""
    out: dict[str, dict[str, float]] = {}
    for scenario in SCENARIOS:
        parts: dict[str, list[Chunk]] = {"before": [], "after": []}
        for chunk in iter_windows(scenario, seed, windows):
            if chunk.window >= 0:
                parts["after" if chunk.window >= CHANGE_WINDOW else "before"].append(chunk)
        for when, chunks in parts.items():
            s = np.concatenate([c.scores for c in chunks])
            p = np.concatenate([c.predicted for c in chunks])
            y = np.concatenate([c.truth for c in chunks])
            g = np.concatenate([c.groups for c in chunks])
            d = np.concatenate([c.delays for c in chunks])
            row = {
                "accuracy": float(np.mean(p == y)),
                "fpr": float(np.mean(p[y == 0])),
                "tpr": float(np.mean(p[y == 1])),
            }
            row |= {f"fpr_{name}": float(np.mean(p[(y == 0) & (g == k)])) for k, name in enumerate(GROUPS)}
            row |= {
                "mean_score": float(np.mean(s)),
                "positive_rate": float(np.mean(y)),
                "delay_h": float(np.mean(d)) / 3600,
            }
            out[f"{scenario}/{when}"] = row
    return out


if __name__ == "__main__":
    print(f"design: {design()}")
    for name, row in check().items():
        print(f"{name:28s} " + " ".join(f"{k} {v:.3f}" for k, v in row.items()))
