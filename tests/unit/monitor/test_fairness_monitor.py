"""Fairness monitor: COMPAS verdicts, insufficient groups, evidence-based breaches, config."""

from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from watchkeeper.config import FairnessConfig
from watchkeeper.monitor.alerts import Evaluation
from watchkeeper.monitor.fairness import disparate_impact_interval, fairness_evaluations
from watchkeeper.stats.fairness import GroupFairnessAggregate, intersection_values
from watchkeeper.stats.fairness_disparity import Rate
from watchkeeper.stats.intervals import newcombe_interval

COMPAS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "compas-two-years.csv"

Columns = dict[str, npt.NDArray[np.str_] | npt.NDArray[np.int64] | npt.NDArray[np.float64]]


@cache
def _compas() -> Columns:
    if not COMPAS.exists():
        pytest.skip(f"{COMPAS} not available")
    with COMPAS.open() as f:
        rows = list(csv.DictReader(f))
    decile = np.array([int(r["decile_score"]) for r in rows])
    return {
        "race": np.array([r["race"] for r in rows]),
        "sex": np.array([r["sex"] for r in rows]),
        "pred": (decile >= 5).astype(np.int64),
        "score": decile / 10.0,
        "y": np.array([int(r["two_year_recid"]) for r in rows]),
    }


def _aggregate(
    attribute: str, groups: npt.ArrayLike, mask: npt.NDArray[np.bool_] | None = None
) -> GroupFairnessAggregate:
    d = _compas()
    keep = np.ones(len(d["y"]), dtype=bool) if mask is None else mask
    agg = GroupFairnessAggregate(attribute)
    agg.update(np.asarray(groups)[keep], d["pred"][keep], d["score"][keep], d["y"][keep])
    return agg


def _by(evaluations: list[Evaluation]) -> dict[tuple[str, str], Evaluation]:
    return {(e.metric, e.subject): e for e in evaluations}


def test_compas_race_disparities_breach_and_native_american_is_insufficient() -> None:
    report, evaluations = fairness_evaluations(
        "compas", "v1", 0.0, 60.0, {"race": _aggregate("race", _compas()["race"])}, FairnessConfig()
    )
    json.dumps(report, allow_nan=False)
    race = report["attributes"]["race"]
    assert race["insufficient_groups"] == ["Native American"]
    assert race["groups"]["Native American"]["status"] == "insufficient data"
    assert race["groups"]["Native American"]["count"] == 18
    assert "Native American" not in race["disparities"]["equalized_odds_difference"]["groups"]
    by = _by(evaluations)
    eo = by[("equalized_odds_difference", "race")]
    assert eo.breached and not eo.cleared and eo.monitor == "fairness" and eo.comparator == ">"
    assert eo.threshold == 0.1 and eo.interval is not None and eo.interval[0] > 0.1
    assert eo.details["insufficient_groups"] == ["Native American"]
    for e in evaluations:
        assert "Native American" not in (e.details.get("group_max"), e.details.get("group_min"))
        assert "Native American" not in e.subject
    # disparate impact: one evaluation per sufficient non-reference group
    assert race["reference_group"] == "African-American"
    di = {s for m, s in by if m == "disparate_impact"}
    assert di == {"race=Asian", "race=Caucasian", "race=Hispanic", "race=Other"}
    assert by[("disparate_impact", "race=Caucasian")].breached  # 0.348 / 0.588 = 0.59


def test_compas_fpr_gap_african_american_vs_caucasian_is_breached() -> None:
    d = _compas()
    mask = np.isin(d["race"], ["African-American", "Caucasian"])
    report, evaluations = fairness_evaluations(
        "compas", "v1", 0.0, 60.0, {"race": _aggregate("race", d["race"], mask)}, FairnessConfig()
    )
    eo = _by(evaluations)[("equalized_odds_difference", "race")]
    assert eo.breached
    assert (eo.details["rate"], eo.details["group_max"], eo.details["group_min"]) == (
        "fpr",
        "African-American",
        "Caucasian",
    )
    # observed and interval against the direct counts (ProPublica: FPR 44.8 % vs 23.5 %)
    aa = (d["race"] == "African-American") & (d["y"] == 0)
    ca = (d["race"] == "Caucasian") & (d["y"] == 0)
    fp_aa, n_aa, fp_ca, n_ca = d["pred"][aa].sum(), aa.sum(), d["pred"][ca].sum(), ca.sum()
    assert eo.observed == pytest.approx(fp_aa / n_aa - fp_ca / n_ca)
    assert eo.interval == pytest.approx(newcombe_interval(fp_aa, n_aa, fp_ca, n_ca))
    components = report["attributes"]["race"]["disparities"]["equalized_odds_difference"]["components"]
    assert components["fpr"]["group_max"] == "African-American"


def test_intersections_are_subjects_and_reference_group_is_configurable() -> None:
    d = _compas()
    joined = intersection_values([d["race"], d["sex"]])
    config = FairnessConfig(reference_group={"race": "Caucasian", "race|sex": "Nobody|Male"})
    report, evaluations = fairness_evaluations(
        "compas",
        "v1",
        0.0,
        60.0,
        {"race": _aggregate("race", d["race"]), "race|sex": _aggregate("race|sex", joined)},
        config,
    )
    assert report["attributes"]["race"]["reference_group"] == "Caucasian"
    assert report["attributes"]["race|sex"]["reference_group_source"].startswith("most_favoured (configured")
    by = _by(evaluations)
    assert ("equalized_odds_difference", "race|sex") in by
    aa = by[("disparate_impact", "race=African-American")]
    assert aa.observed == pytest.approx(0.588 / 0.348, abs=0.01) and not aa.breached and aa.cleared


def _two_groups(n: int, rate_a: float, rate_b: float) -> GroupFairnessAggregate:
    agg = GroupFairnessAggregate("g")
    groups = np.repeat(["a", "b"], n)
    y = np.tile(np.arange(n) % 2, 2)
    pred = np.concatenate([np.arange(n) < rate_a * n, np.arange(n) < rate_b * n]).astype(int)
    agg.update(groups, pred, y_true=y)
    return agg


def test_point_estimate_above_tolerance_without_evidence_does_not_breach() -> None:
    _, evaluations = fairness_evaluations("m", "v", 0, 1, {"g": _two_groups(40, 0.6, 0.4)}, FairnessConfig())
    dp = _by(evaluations)[("demographic_parity_difference", "g")]
    assert dp.observed == pytest.approx(0.2) and dp.interval is not None and dp.interval[0] < 0.1
    assert not dp.breached and not dp.cleared
    _, evaluations = fairness_evaluations("m", "v", 0, 1, {"g": _two_groups(4000, 0.6, 0.4)}, FairnessConfig())
    assert _by(evaluations)[("demographic_parity_difference", "g")].breached
    _, evaluations = fairness_evaluations("m", "v", 0, 1, {"g": _two_groups(4000, 0.52, 0.5)}, FairnessConfig())
    assert _by(evaluations)[("demographic_parity_difference", "g")].cleared  # 0.02 <= 0.075


def test_fewer_than_two_sufficient_groups_clears_and_disabled_gives_no_evaluations() -> None:
    _, evaluations = fairness_evaluations("m", "v", 0, 1, {"g": _two_groups(20, 1.0, 0.0)}, FairnessConfig())
    differences = [e for e in evaluations if e.metric != "disparate_impact"]
    assert len(differences) == 3 and all(e.cleared and not e.breached for e in differences)
    assert all(e.interval is None for e in differences)
    report, none = fairness_evaluations("m", "v", 0, 1, {"g": _two_groups(20, 1.0, 0.0)}, FairnessConfig(enabled=False))
    assert none == [] and "g" in report["attributes"]


def test_disparate_impact_interval_from_wilson_bounds() -> None:
    group, ref = Rate(0.3, 30, 100, 0.22, 0.40), Rate(0.6, 60, 100, 0.50, 0.69)
    assert disparate_impact_interval(group, ref) == pytest.approx((0.22 / 0.69, 0.40 / 0.50))
    assert disparate_impact_interval(group, Rate(0.0, 0, 100, 0.0, 0.04)) is None


def test_config_defaults_and_validation() -> None:
    config = FairnessConfig(tolerance={"equalized_odds_difference": 0.05})
    assert config.tolerance["equalized_odds_difference"] == 0.05
    assert config.tolerance["disparate_impact"] == 0.8 and config.tolerance["demographic_parity_difference"] == 0.1
    assert config.subjects(["race", "sex"]) == ["race", "sex"]
    assert FairnessConfig(intersections=[["race", "sex"]]).subjects(["race"]) == ["race", "race|sex"]
    with pytest.raises(ValidationError):
        FairnessConfig(tolerance={"parity": 0.1})
    with pytest.raises(ValidationError):
        FairnessConfig(tolerance={"disparate_impact": 1.5})
    with pytest.raises(ValidationError):
        FairnessConfig(intersections=[["race"]])
    with pytest.raises(ValidationError):
        FairnessConfig(metrics=["accuracy_difference"])  # type: ignore[list-item]


# -- a small group never flips a verdict -------------------------------------------------


def _build(groups: list[tuple[str, int, float, float, float]], seed: int) -> GroupFairnessAggregate:
    rng = np.random.default_rng(seed)
    agg = GroupFairnessAggregate("g")
    for name, n, p_pos, tpr, fpr in groups:
        y = (rng.random(n) < p_pos).astype(int)
        pred = np.where(y == 1, rng.random(n) < tpr, rng.random(n) < fpr).astype(int)
        agg.update(np.full(n, name), pred, rng.random(n), y)
    return agg


big_group = st.tuples(
    st.integers(30, 400),
    st.floats(0.1, 0.9),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
)


@settings(max_examples=60, deadline=None)
@given(
    bigs=st.lists(big_group, min_size=1, max_size=4),
    small_n=st.integers(1, 29),
    small_extreme=st.sampled_from([(1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 1.0), (0.5, 1.0, 0.0)]),
    seed=st.integers(0, 2**16),
)
def test_a_group_below_min_support_never_flips_breached(
    bigs: list[tuple[int, float, float, float]],
    small_n: int,
    small_extreme: tuple[float, float, float],
    seed: int,
) -> None:
    base = [(f"big{i}", *b) for i, b in enumerate(bigs)]
    with_small = [*base, ("small", small_n, *small_extreme)]
    config = FairnessConfig(min_support=30)
    _, without = fairness_evaluations("m", "v", 0, 1, {"g": _build(base, seed)}, config)
    _, with_ = fairness_evaluations("m", "v", 0, 1, {"g": _build(with_small, seed)}, config)
    a, b = _by(without), _by(with_)
    assert set(a) == set(b)  # the small group gets no disparate-impact evaluation either
    for key, evaluation in a.items():
        assert b[key].breached == evaluation.breached, key
        assert b[key].cleared == evaluation.cleared, key
        assert "small" not in (b[key].details.get("group_max"), b[key].details.get("group_min"))
