"""Tests for watchkeeper.stats.fairness: fairlearn parity on COMPAS, merge/serialise laws."""

from __future__ import annotations

import doctest
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equal_opportunity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from sklearn.metrics import accuracy_score, precision_score

from watchkeeper.stats import fairness, fairness_disparity
from watchkeeper.stats.fairness import (
    MISSING,
    OTHER,
    FairnessReport,
    GroupFairnessAggregate,
    intersection_values,
)

COMPAS = Path("/work/shared/data/compas-two-years.csv")
ATTRIBUTES = ["race", "sex", "age_cat", "race|sex"]
TOL = 1e-9


def _precision(y_true: Any, y_pred: Any) -> float:
    return float(precision_score(y_true, y_pred, zero_division=0))


FAIRLEARN_METRICS = {
    "selection_rate": selection_rate,
    "tpr": true_positive_rate,
    "fpr": false_positive_rate,
    "fnr": false_negative_rate,
    "precision": _precision,
    "accuracy": accuracy_score,
}
DISPARITIES = {
    "demographic_parity": (demographic_parity_difference, demographic_parity_ratio),
    "equalized_odds": (equalized_odds_difference, equalized_odds_ratio),
    "equal_opportunity": (equal_opportunity_difference, equal_opportunity_ratio),
}


@pytest.fixture(scope="module")
def compas() -> pd.DataFrame:
    if not COMPAS.exists():
        pytest.skip(f"{COMPAS} not available")
    df = pd.read_csv(COMPAS)
    df["race|sex"] = intersection_values([df["race"].to_numpy(), df["sex"].to_numpy()])
    return df


def _columns(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y_pred = (df["decile_score"].to_numpy() >= 5).astype(int)
    return y_pred, df["decile_score"].to_numpy() / 10.0, df["two_year_recid"].to_numpy()


@pytest.fixture(scope="module")
def reports(compas: pd.DataFrame) -> dict[str, FairnessReport]:
    y_pred, scores, y_true = _columns(compas)
    out = {}
    for attribute in ATTRIBUTES:
        agg = GroupFairnessAggregate(attribute)
        # several batches, to exercise accumulation
        for chunk in np.array_split(np.arange(len(compas)), 5):
            agg.update(compas[attribute].to_numpy()[chunk], y_pred[chunk], scores[chunk], y_true[chunk])
        out[attribute] = agg.compute()
    return out


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_compas_per_group_metrics_match_fairlearn(
    compas: pd.DataFrame, reports: dict[str, FairnessReport], attribute: str
) -> None:
    y_pred, scores, y_true = _columns(compas)
    frame = MetricFrame(metrics=FAIRLEARN_METRICS, y_true=y_true, y_pred=y_pred, sensitive_features=compas[attribute])
    report = reports[attribute]
    assert [g.group for g in report.groups] == sorted(frame.by_group.index)
    for group, expected in frame.by_group.iterrows():
        got = report.group(str(group))
        assert got.count == int((compas[attribute] == group).sum())
        for name, value in expected.items():
            assert getattr(got, name).value == pytest.approx(value, abs=TOL), (group, name)
        rows = compas[attribute] == group
        assert got.mean_score == pytest.approx(scores[rows].mean(), abs=TOL)
        assert got.observed_positive_rate == pytest.approx(y_true[rows].mean(), abs=TOL)
    for name, value in frame.overall.items():
        assert getattr(report.overall, name).value == pytest.approx(value, abs=TOL)


@pytest.mark.parametrize("attribute", ATTRIBUTES)
@pytest.mark.parametrize("method", ["between_groups", "to_overall"])
def test_compas_disparities_match_fairlearn(
    compas: pd.DataFrame, reports: dict[str, FairnessReport], attribute: str, method: str
) -> None:
    y_pred, _, y_true = _columns(compas)
    suffix = "between_groups" if method == "between_groups" else "to_overall"
    for metric, (difference, ratio) in DISPARITIES.items():
        got = getattr(reports[attribute].all_groups, metric)
        kwargs = {"sensitive_features": compas[attribute], "method": method}
        assert getattr(got, f"difference_{suffix}") == pytest.approx(difference(y_true, y_pred, **kwargs), abs=TOL), (
            metric
        )
        assert getattr(got, f"ratio_{suffix}") == pytest.approx(ratio(y_true, y_pred, **kwargs), abs=TOL), metric


def test_compas_small_groups_and_fpr_gap(reports: dict[str, FairnessReport]) -> None:
    race = reports["race"]
    native = race.group("Native American")
    assert native.count == 18 and not native.sufficient and not native.sufficient_selection
    assert "Native American" in race.insufficient_groups
    suff = race.sufficient_groups
    assert "Native American" not in suff.demographic_parity.groups
    assert "Native American" in race.all_groups.demographic_parity.groups
    # the FPR gap African-American vs Caucasian is real: Newcombe interval excludes 0
    gap = race.compare("fpr", "African-American", "Caucasian")
    assert gap.low > 0 and gap.difference > 0.15 and gap.low < gap.difference < gap.high
    assert race.compare("fpr", "Caucasian", "African-American").high < 0
    # all sufficient-group gaps name their pair and carry an interval around the difference
    for disparity in (suff.demographic_parity, suff.equalized_odds, suff.equal_opportunity):
        pair = disparity.gap
        assert pair is not None and pair.low <= pair.difference <= pair.high
        assert {pair.group_max, pair.group_min} <= set(disparity.groups)
    assert suff.equalized_odds.difference_between_groups == pytest.approx(suff.equalized_odds.gap.difference)  # type: ignore[union-attr]
    # disparate impact against the most favoured sufficient group
    assert (
        race.reference_group
        == max((g for g in race.groups if g.sufficient_selection), key=lambda g: g.selection_rate.value).group
    )
    cau_di = race.group("Caucasian").disparate_impact
    assert cau_di is not None and cau_di < 0.8 and race.group("Caucasian").four_fifths_violation
    assert not native.four_fifths_violation  # too few rows to flag
    ref = reports["race"]
    assert ref.group(ref.reference_group or "").disparate_impact == pytest.approx(1.0)


def test_wilson_intervals_match_scipy_formula(reports: dict[str, FairnessReport]) -> None:
    z = norm.ppf(0.975)
    for g in reports["race|sex"].groups:
        rate = g.fpr
        if rate.n == 0:
            continue
        p, n = rate.value, rate.n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        assert rate.low == pytest.approx(max(0.0, centre - half), abs=1e-12)
        assert rate.high == pytest.approx(min(1.0, centre + half), abs=1e-12)


def test_reference_group_configured_and_unknown(compas: pd.DataFrame) -> None:
    y_pred, scores, y_true = _columns(compas)
    agg = GroupFairnessAggregate("race")
    agg.update(compas["race"].to_numpy(), y_pred, scores, y_true)
    report = agg.compute(reference_group="Caucasian")
    assert report.reference_group == "Caucasian"
    assert report.group("Caucasian").disparate_impact == pytest.approx(1.0)
    with pytest.raises(ValueError, match="reference_group='Martian'"):
        agg.compute(reference_group="Martian")


def test_partially_labelled_batches_match_fairlearn_on_labelled_rows() -> None:
    rng = np.random.default_rng(7)
    n = 600
    groups = rng.choice(np.array(["a", "b", "c"], dtype=object), n)
    groups[:5] = None
    y_pred = rng.integers(0, 2, n)
    y_true = rng.integers(0, 2, n).astype(float)
    y_true[rng.random(n) < 0.3] = np.nan
    y_true[:20][np.isnan(y_true[:20])] = -1
    agg = GroupFairnessAggregate("g")
    agg.update(groups, y_pred, None, y_true)
    report = agg.compute(min_support=1)
    lab = ~np.isnan(y_true) & (y_true != -1)
    sens = np.where(pd.isna(groups), MISSING, groups).astype(str)
    frame = MetricFrame(
        metrics={"tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=y_true[lab],
        y_pred=y_pred[lab],
        sensitive_features=sens[lab],
    )
    for group, row in frame.by_group.iterrows():
        assert report.group(str(group)).tpr.value == pytest.approx(row["tpr"], abs=TOL)
        assert report.group(str(group)).fpr.value == pytest.approx(row["fpr"], abs=TOL)
    assert report.group("a").count == int((sens == "a").sum())  # selection over all rows
    assert report.all_groups.equalized_odds.difference_between_groups == pytest.approx(
        equalized_odds_difference(y_true[lab], y_pred[lab], sensitive_features=sens[lab])
    )
    assert report.overall.mean_score is None


def test_zero_denominator_conventions_match_fairlearn() -> None:
    # group "b" has no positives (TPR 0 by sklearn convention); nobody selected in "c"
    groups = np.array(["a"] * 4 + ["b"] * 3 + ["c"] * 3)
    y_true = np.array([1, 1, 0, 0, 0, 0, 0, 1, 0, 1])
    y_pred = np.array([1, 0, 1, 0, 1, 0, 0, 0, 0, 0])
    agg = GroupFairnessAggregate("g")
    agg.update(groups, y_pred, y_true=y_true)
    report = agg.compute(min_support=1)
    for method in ("between_groups", "to_overall"):
        suffix = method
        for metric, (difference, ratio) in DISPARITIES.items():
            got = getattr(report.all_groups, metric)
            exp_d = difference(y_true, y_pred, sensitive_features=groups, method=method)
            exp_r = ratio(y_true, y_pred, sensitive_features=groups, method=method)
            np.testing.assert_allclose(getattr(got, f"difference_{suffix}"), exp_d, atol=TOL)
            np.testing.assert_allclose(getattr(got, f"ratio_{suffix}"), exp_r, atol=TOL)
    assert report.group("c").precision.value == 0.0 and report.group("c").precision.n == 0


def test_input_validation_messages() -> None:
    agg = GroupFairnessAggregate("g")
    with pytest.raises(ValueError, match="y_pred value 2"):
        agg.update(np.array(["a", "b"]), np.array([1, 2]))
    with pytest.raises(ValueError, match=r"y_true value 0\.5"):
        agg.update(np.array(["a", "b"]), np.array([1, 0]), y_true=np.array([0.5, 1]))
    with pytest.raises(ValueError, match="scores: shape"):
        agg.update(np.array(["a", "b"]), np.array([1, 0]), scores=np.array([0.5]))
    with pytest.raises(ValueError, match="max_groups=0"):
        GroupFairnessAggregate("g", max_groups=0)
    with pytest.raises(ValueError, match="min_support=-1"):
        agg.compute(min_support=-1)
    with pytest.raises(ValueError, match=re.escape("sep='|'")):
        intersection_values([np.array(["a|b"]), np.array(["c"])])
    with pytest.raises(ValueError, match="attribute='h'"):
        agg.merge(GroupFairnessAggregate("h"))


def test_doctests() -> None:
    for module in (fairness, fairness_disparity):
        assert doctest.testmod(module).failed == 0


# ---------------------------------------------------------------- merge / serialise laws

ALPHABET = [f"g{i:02d}" for i in range(12)] + [None]


@st.composite
def batches(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    n = draw(st.integers(0, 80))
    idx = draw(st.lists(st.integers(0, len(ALPHABET) - 1), min_size=n, max_size=n))
    groups = np.array([ALPHABET[i] for i in idx], dtype=object)
    y_pred = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=int)
    labels = draw(st.lists(st.sampled_from([0.0, 1.0, -1.0, math.nan]), min_size=n, max_size=n))
    scores = draw(st.lists(st.one_of(st.floats(0, 1), st.just(math.nan)), min_size=n, max_size=n))
    return groups, y_pred, np.array(scores, dtype=float), np.array(labels, dtype=float)


def _assert_same(a: GroupFairnessAggregate, b: GroupFairnessAggregate) -> None:
    da, db = a.to_dict(), b.to_dict()
    assert da["groups"].keys() == db["groups"].keys()
    assert da["pooled_hashes"] == db["pooled_hashes"]
    for name, row in da["groups"].items():
        for field, value in row.items():
            assert db["groups"][name][field] == pytest.approx(value, rel=1e-12, abs=1e-12)


def _build(data: tuple[np.ndarray, ...], rows: np.ndarray, max_groups: int) -> GroupFairnessAggregate:
    agg = GroupFairnessAggregate("g", max_groups=max_groups)
    groups, y_pred, scores, y_true = data
    agg.update(groups[rows], y_pred[rows], scores[rows], y_true[rows])
    return agg


@settings(max_examples=150, deadline=None)
@given(data=batches(), cut=st.floats(0, 1), max_groups=st.integers(1, 15))
def test_merge_of_split_equals_whole(data: tuple[np.ndarray, ...], cut: float, max_groups: int) -> None:
    n = len(data[0])
    k = int(cut * n)
    whole = _build(data, np.arange(n), max_groups)
    left, right = _build(data, np.arange(k), max_groups), _build(data, np.arange(k, n), max_groups)
    _assert_same(left.merge(right), whole)
    _assert_same(right.merge(left), whole)
    # incremental updates equal one big update
    incremental = GroupFairnessAggregate("g", max_groups=max_groups)
    for rows in (np.arange(k), np.arange(k, n)):
        incremental.update(data[0][rows], data[1][rows], data[2][rows], data[3][rows])
    _assert_same(incremental, whole)


@settings(max_examples=100, deadline=None)
@given(data=batches(), max_groups=st.integers(1, 15))
def test_json_round_trip(data: tuple[np.ndarray, ...], max_groups: int) -> None:
    agg = _build(data, np.arange(len(data[0])), max_groups)
    text = json.dumps(agg.to_dict(), allow_nan=False)
    back = GroupFairnessAggregate.from_dict(json.loads(text))
    assert back.to_dict() == agg.to_dict()
    assert repr(back.compute(min_support=1)) == repr(agg.compute(min_support=1))


@settings(max_examples=100, deadline=None)
@given(data=batches(), max_groups=st.integers(1, 6))
def test_cap_pools_extra_groups_and_preserves_counts(data: tuple[np.ndarray, ...], max_groups: int) -> None:
    groups = data[0]
    agg = _build(data, np.arange(len(groups)), max_groups)
    counts = agg.counts()
    seen = sorted({MISSING if g is None else g for g in groups})
    named = [k for k in counts if k != OTHER]
    assert named == seen[:max_groups]
    assert sum(row["n"] for row in counts.values()) == len(groups)
    assert sum(row["n_labeled"] for row in counts.values()) == int(np.sum(~np.isnan(data[3]) & (data[3] != -1)))
    pooled = seen[max_groups:]
    assert agg.pooled_distinct == len(pooled)
    if pooled:
        assert counts[OTHER]["n"] == sum(1 for g in groups if (g or MISSING) in pooled)
        report = agg.compute(min_support=1)
        assert report.pooled is not None and report.pooled_distinct_groups == len(pooled)
        assert OTHER not in report.all_groups.demographic_parity.groups


def test_pooled_distinct_estimate_for_many_values() -> None:
    values = np.array([f"user-{i}" for i in range(5000)])
    agg = GroupFairnessAggregate("free_text", max_groups=5)
    agg.update(values, np.zeros(5000, dtype=int))
    assert agg.counts()[OTHER]["n"] == 4995
    assert abs(agg.pooled_distinct - 4995) / 4995 < 0.2
    assert len(agg.to_dict()["pooled_hashes"]) == fairness.SKETCH_SIZE


def test_from_dict_rejects_bad_payloads() -> None:
    agg = GroupFairnessAggregate("g", max_groups=2)
    agg.update(np.array(["a", "b", "c"]), np.array([1, 0, 1]))
    good = agg.to_dict()
    with pytest.raises(ValueError, match="version=99"):
        GroupFairnessAggregate.from_dict({**good, "version": 99})
    with pytest.raises(ValueError, match="missing fields"):
        GroupFairnessAggregate.from_dict({**good, "groups": {"a": {"n": 1}}})
    with pytest.raises(ValueError, match="max_groups=1"):
        GroupFairnessAggregate.from_dict({**good, "max_groups": 1})
    assert GroupFairnessAggregate.from_dict(good).counts() == agg.counts()


def test_late_outcomes_complete_earlier_unlabelled_predictions() -> None:
    """Predictions counted at prediction time plus their outcomes later equal one labelled update."""
    rng = np.random.default_rng(4)
    groups = rng.choice(["a", "b", "c"], size=300)
    y_pred = rng.integers(0, 2, size=300)
    scores = rng.uniform(size=300)
    y_true = rng.integers(0, 2, size=300).astype(float)
    labelled = rng.uniform(size=300) < 0.6
    whole = GroupFairnessAggregate("g")
    whole.update(groups, y_pred, scores, np.where(labelled, y_true, np.nan))
    streamed = GroupFairnessAggregate("g")
    streamed.update(groups, y_pred, scores)
    streamed.update(groups[labelled], y_pred[labelled], scores[labelled], y_true[labelled], late=True)
    assert streamed.counts() == whole.counts()
