"""Design effects in the fairness verdicts: clustered rows widen a group's intervals, the
state survives a restore, and groups not seen any more are forgotten."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from watchkeeper.config import FairnessConfig
from watchkeeper.monitor.fairness import fairness_evaluations
from watchkeeper.monitor.fairness_dispersion import MAX_RATES, FairnessDispersion
from watchkeeper.stats.fairness import GroupFairnessAggregate


def _window(rng: np.random.Generator, cluster: int, groups: tuple[str, ...] = ("A", "C")) -> GroupFairnessAggregate:
    """A window where every group has the same rates, its rows in clusters sharing score and label."""
    names, preds, scores, labels = [], [], [], []
    for group in groups:
        for _ in range(int(rng.integers(30, 60))):
            score = float(rng.beta(2, 3))
            label = int(rng.random() < score)
            for _ in range(cluster):
                names.append(group)
                preds.append(int(score >= 0.5))
                scores.append(score)
                labels.append(label)
    aggregate = GroupFairnessAggregate("group")
    aggregate.update(np.array(names), np.array(preds), np.array(scores), np.array(labels))
    return aggregate


def _gap_window() -> GroupFairnessAggregate:
    """TPR of A 0.85 (n=200) against C 0.55 (n=200): a 0.3 gap, past the 0.1 tolerance on binomial evidence."""
    aggregate = GroupFairnessAggregate("group")
    for group, tp in (("A", 170), ("C", 110)):
        n = 200
        preds = np.r_[np.ones(tp), np.zeros(n - tp), np.zeros(200)].astype(np.int64)
        labels = np.r_[np.ones(n), np.zeros(200)].astype(np.int64)
        aggregate.update(np.full(len(labels), group), preds, np.full(len(labels), 0.5), labels)
    return aggregate


def _equal_opportunity(effects: dict[tuple[str, str, str], float]) -> tuple[bool, str]:
    config = FairnessConfig(metrics=["equal_opportunity_difference"])
    _, evaluations = fairness_evaluations("m", "1", 0.0, 60.0, {"group": _gap_window()}, config, 3.0, effects)
    (evaluation,) = evaluations
    return evaluation.breached, evaluation.description


def test_clustered_rows_give_a_design_effect_and_independent_rows_none() -> None:
    rng = np.random.default_rng(3)
    clustered, independent = FairnessDispersion(FairnessConfig()), FairnessDispersion(FairnessConfig())
    for _ in range(30):
        clustered.update({"group": _window(rng, cluster=5)})
        independent.update({"group": _window(rng, cluster=1)})
    effects = clustered.effects()
    assert len(effects) == 6  # A and C: selection rate, TPR, FPR
    assert min(effects.values()) > 1.5
    assert 2.5 < float(np.median(list(effects.values()))) < 7.5  # 5, from 30 windows of 10-25 clusters
    assert all(v < 1.6 for v in independent.effects().values())  # rarely any, and then small


def test_a_design_effect_widens_the_interval_that_would_have_paged() -> None:
    breached, description = _equal_opportunity({})
    assert breached and "design effect" not in description
    breached, description = _equal_opportunity({("group", "A", "tpr"): 5.0, ("group", "C", "tpr"): 5.0})
    assert not breached
    assert "design effects 5.00, 5.00" in description


def test_state_round_trips_and_unseen_groups_are_forgotten() -> None:
    rng = np.random.default_rng(5)
    config = FairnessConfig(dispersion_windows=24)
    dispersion = FairnessDispersion(config)
    for _ in range(24):
        dispersion.update({"group": _window(rng, cluster=4, groups=("A", "B"))})
    restored = FairnessDispersion(config, dispersion.to_dict())
    assert restored.effects() == dispersion.effects() != {}
    for _ in range(25):
        restored.update({"group": _window(rng, cluster=1, groups=("A",))})
    assert {key.split("\x1f")[1] for key in restored.rates} == {"A"}


def test_zero_windows_turn_it_off_and_too_few_are_refused() -> None:
    off = FairnessDispersion(FairnessConfig(dispersion_windows=0))
    off.update({"group": _window(np.random.default_rng(1), cluster=5)})
    assert off.rates == {} and off.effects() == {}
    with pytest.raises(ValueError, match="expected 0 \\(off\\) or at least 24 windows"):
        FairnessConfig(dispersion_windows=12)


class _Counts:
    """What FairnessDispersion reads of an aggregate: per group, its counters."""

    def __init__(self, rows: dict[str, dict[str, int]]) -> None:
        self.rows = rows

    def counts(self) -> dict[str, dict[str, int]]:
        return self.rows


def test_the_state_stays_small_with_many_attributes_and_groups() -> None:
    """Five attributes of 300 groups each (max_groups raised): only groups with min_support rows are
    tracked, at most MAX_RATES rates are kept, and the state stays far below Kafka's 1 MB record."""
    rng = np.random.default_rng(9)
    dispersion = FairnessDispersion(FairnessConfig(max_groups=1000))
    for _ in range(48):
        aggregates: dict[str, Any] = {}
        for subject in ("a", "b", "c", "d", "e"):
            rows = {}
            for g in range(300):
                n = int(rng.integers(10, 200))
                tp, fn, fp = (int(rng.integers(0, n // 4 + 1)) for _ in range(3))
                rows[f"group-{g}"] = {
                    "n": n,
                    "n_labeled": n,
                    "selected": tp + fp,
                    "tp": tp,
                    "fn": fn,
                    "fp": fp,
                    "tn": n - tp - fn - fp,
                }
            aggregates[subject] = _Counts(rows)
        dispersion.update(aggregates)
    state = json.dumps(dispersion.to_dict())
    assert len(dispersion.rates) <= MAX_RATES
    assert len(state) < 200_000


def test_groups_below_min_support_are_not_tracked() -> None:
    dispersion = FairnessDispersion(FairnessConfig(min_support=30))
    row = {"n": 29, "n_labeled": 29, "selected": 10, "tp": 5, "fn": 5, "fp": 5, "tn": 14}
    dispersion.update({"group": _Counts({"tiny": row, "big": {k: 10 * v for k, v in row.items()}})})
    assert sorted(key.split("\x1f")[1] for key in dispersion.rates) == ["big", "big", "big"]
