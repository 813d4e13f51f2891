"""Report types and disparity arithmetic for :mod:`watchkeeper.stats.fairness`.

Definitions follow ``fairlearn.metrics`` (0.11-0.15) exactly, with per-group rates r_g:

* between_groups: difference = max_g r_g - min_g r_g; ratio = min_g r_g / max_g r_g
  (0/0 -> NaN, as pandas division does).
* to_overall: difference = max_g |r_g - r_all|; ratio = min_g s(r_g / r_all) with
  s(x) = 1/x if x > 1 else x, NaN ratios (0/0) skipped by the minimum.
* demographic parity uses the selection rate P(h=1 | A=g); equal opportunity the true
  positive rate P(h=1 | A=g, Y=1); equalized odds (``agg="worst_case"``) the larger
  difference (smaller ratio) of TPR and FPR, combined with Python's ``max``/``min`` in
  the order (TPR, FPR) as fairlearn does.
* Rates with an empty denominator are 0, as ``sklearn.metrics.confusion_matrix(...,
  normalize="true")`` and ``precision_score(zero_division=0)`` give them.

Sources: fairlearn ``metrics/_fairness_metrics.py`` and ``_disaggregated_result.py``;
Wilson (1927), JASA 22(158); Newcombe (1998), Statistics in Medicine 17(8), method 10.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from watchkeeper.stats.intervals import newcombe_interval, wilson_interval

__all__ = [
    "Disparity",
    "DisparitySet",
    "FairnessReport",
    "Gap",
    "GroupMetrics",
    "Rate",
    "disparity_set",
    "group_metrics",
]

FOUR_FIFTHS = 0.8
_RATES = ("selection_rate", "tpr", "fpr", "fnr", "precision", "accuracy")


@dataclass(frozen=True)
class Rate:
    """A proportion successes / n with its Wilson interval (0 when n == 0, interval (0, 1))."""

    value: float
    successes: int
    n: int
    low: float
    high: float


@dataclass(frozen=True)
class GroupMetrics:
    """Metrics of one group value; label-based rates are over labelled rows only."""

    group: str
    count: int
    n_labeled: int
    selection_rate: Rate
    tpr: Rate
    fpr: Rate
    fnr: Rate
    precision: Rate
    accuracy: Rate
    mean_score: float | None
    mean_score_labeled: float | None
    observed_positive_rate: float | None
    sufficient: bool
    sufficient_selection: bool
    disparate_impact: float | None
    four_fifths_violation: bool


@dataclass(frozen=True)
class Gap:
    """The pair realising a between-groups difference and Newcombe's interval for it."""

    rate: str
    group_max: str
    group_min: str
    difference: float
    low: float
    high: float


@dataclass(frozen=True)
class Disparity:
    """One fairlearn disparity metric computed both ways over ``groups``."""

    metric: str
    difference_between_groups: float
    ratio_between_groups: float
    difference_to_overall: float
    ratio_to_overall: float
    groups: tuple[str, ...]
    gap: Gap | None


@dataclass(frozen=True)
class DisparitySet:
    """Demographic parity, equalized odds (worst case) and equal opportunity."""

    demographic_parity: Disparity
    equalized_odds: Disparity
    equal_opportunity: Disparity


@dataclass(frozen=True)
class FairnessReport:
    """Result of :meth:`GroupFairnessAggregate.compute`.

    ``all_groups`` reproduces fairlearn over every named group present (groups with no
    rows, and the pooled ``__other__`` bucket, are left out); ``sufficient_groups`` uses
    only groups meeting ``min_support`` and is what alerts should use.
    """

    attribute: str
    min_support: int
    confidence: float
    reference_group: str | None
    groups: tuple[GroupMetrics, ...]
    overall: GroupMetrics
    pooled: GroupMetrics | None
    pooled_distinct_groups: int
    insufficient_groups: tuple[str, ...]
    all_groups: DisparitySet
    sufficient_groups: DisparitySet

    def group(self, name: str) -> GroupMetrics:
        """Return the metrics of group ``name`` (``KeyError`` if it is not tracked)."""
        for metrics in self.groups:
            if metrics.group == name:
                return metrics
        if self.pooled is not None and self.pooled.group == name:
            return self.pooled
        raise KeyError(f"group={name!r}: not tracked; tracked: {[g.group for g in self.groups]}")

    def compare(self, rate: str, group_a: str, group_b: str) -> Gap:
        """Difference rate(a) - rate(b) with Newcombe's interval at the report's confidence.

        ``rate`` is one of selection_rate, tpr, fpr, fnr, precision, accuracy.
        """
        if rate not in _RATES:
            raise ValueError(f"rate={rate!r}: expected one of {_RATES}")
        a, b = getattr(self.group(group_a), rate), getattr(self.group(group_b), rate)
        low, high = newcombe_interval(a.successes, a.n, b.successes, b.n, self.confidence)
        return Gap(rate, group_a, group_b, a.value - b.value, low, high)


def _rate(successes: int, n: int, confidence: float) -> Rate:
    low, high = wilson_interval(successes, n, confidence)
    return Rate(successes / n if n else 0.0, successes, n, low, high)


def group_metrics(
    group: str,
    counts: Mapping[str, float],
    min_support: int,
    confidence: float,
    reference_rate: float | None,
) -> GroupMetrics:
    """Per-group metrics from the counters of :class:`GroupFairnessAggregate`.

    selection = selected/n, TPR = TP/(TP+FN), FPR = FP/(FP+TN), FNR = FN/(TP+FN),
    precision = TP/(TP+FP), accuracy = (TP+TN)/n_labeled; disparate impact =
    selection / ``reference_rate`` (None when that is 0 or unknown).
    """
    n, n_lab = int(counts["n"]), int(counts["n_labeled"])
    tp, fp, fn, tn = (int(counts[k]) for k in ("tp", "fp", "fn", "tn"))
    selection = _rate(int(counts["selected"]), n, confidence)
    sufficient_selection = n >= min_support
    impact = selection.value / reference_rate if reference_rate else None
    n_scored, n_scored_lab = counts["n_scored"], counts["n_scored_labeled"]
    return GroupMetrics(
        group=group,
        count=n,
        n_labeled=n_lab,
        selection_rate=selection,
        tpr=_rate(tp, tp + fn, confidence),
        fpr=_rate(fp, fp + tn, confidence),
        fnr=_rate(fn, tp + fn, confidence),
        precision=_rate(tp, tp + fp, confidence),
        accuracy=_rate(tp + tn, n_lab, confidence),
        mean_score=counts["score_sum"] / n_scored if n_scored else None,
        mean_score_labeled=counts["score_sum_labeled"] / n_scored_lab if n_scored_lab else None,
        observed_positive_rate=(tp + fn) / n_lab if n_lab else None,
        sufficient=n_lab >= min_support,
        sufficient_selection=sufficient_selection,
        disparate_impact=impact,
        four_fifths_violation=sufficient_selection and impact is not None and impact < FOUR_FIFTHS,
    )


def _ratio_sub_one(x: float) -> float:
    return 1.0 / x if x > 1 else x


def _compare(values: Sequence[float], overall: float) -> tuple[float, float, float, float]:
    """(difference, ratio) between groups, then (difference, ratio) to overall."""
    if not values:
        return math.nan, math.nan, math.nan, math.nan
    high, low = max(values), min(values)
    ratio_between = low / high if high else math.nan
    diff_overall = max(abs(v - overall) for v in values)
    ratios = [_ratio_sub_one(v / overall) for v in values if overall]
    ratio_overall = min(ratios) if ratios else math.nan
    return high - low, ratio_between, diff_overall, ratio_overall


def _gap(rate: str, members: Sequence[GroupMetrics], confidence: float) -> Gap | None:
    if len(members) < 2:
        return None
    get: Callable[[GroupMetrics], Rate] = lambda g: getattr(g, rate)  # noqa: E731
    top = max(members, key=lambda g: get(g).value)
    bottom = min(members, key=lambda g: get(g).value)
    a, b = get(top), get(bottom)
    low, high = newcombe_interval(a.successes, a.n, b.successes, b.n, confidence)
    return Gap(rate, top.group, bottom.group, a.value - b.value, low, high)


def _single(metric: str, rate: str, members: Sequence[GroupMetrics], overall: GroupMetrics, conf: float) -> Disparity:
    values = [getattr(g, rate).value for g in members]
    d_b, r_b, d_o, r_o = _compare(values, getattr(overall, rate).value)
    names = tuple(g.group for g in members)
    return Disparity(metric, d_b, r_b, d_o, r_o, names, _gap(rate, members, conf))


def disparity_set(
    selection_members: Sequence[GroupMetrics],
    label_members: Sequence[GroupMetrics],
    overall: GroupMetrics,
    confidence: float,
) -> DisparitySet:
    """Fairlearn's disparities: selection rate over ``selection_members``, TPR/FPR over
    ``label_members``; equalized odds = max of the TPR and FPR differences (min of ratios)."""
    dp = _single("demographic_parity", "selection_rate", selection_members, overall, confidence)
    eo_tpr = _single("equal_opportunity", "tpr", label_members, overall, confidence)
    eo_fpr = _single("fpr", "fpr", label_members, overall, confidence)
    # Python's max/min over (tpr, fpr) exactly as fairlearn's agg="worst_case" (NaN-order too).
    worst = eo_tpr.gap
    if eo_fpr.gap is not None and (worst is None or eo_fpr.gap.difference > worst.difference):
        worst = eo_fpr.gap
    odds = Disparity(
        "equalized_odds",
        max([eo_tpr.difference_between_groups, eo_fpr.difference_between_groups]),
        min([eo_tpr.ratio_between_groups, eo_fpr.ratio_between_groups]),
        max([eo_tpr.difference_to_overall, eo_fpr.difference_to_overall]),
        min([eo_tpr.ratio_to_overall, eo_fpr.ratio_to_overall]),
        eo_tpr.groups,
        worst,
    )
    return DisparitySet(dp, odds, eo_tpr)
