"""The fairness monitor: per-window group-disparity verdicts (pure, no I/O).

For each sensitive attribute (or intersection, e.g. ``race|sex``) the window's
:class:`~watchkeeper.stats.fairness.GroupFairnessAggregate` is computed with
``min_support``; only *sufficient* groups (at least ``min_support`` rows, labelled rows for
label-based rates) take part in the disparities, so a tiny group can neither raise nor
hide an alert. Rules, with tolerance t:

* demographic parity / equal opportunity / equalized odds difference (subject = attribute):
  observed = max - min rate over sufficient groups (equalized odds: the larger of the TPR
  and FPR differences); interval = Newcombe's hybrid score interval (Newcombe 1998, method
  10) of the realising pair's difference; **breached** when the interval lies entirely
  above t (evidence, not just a point estimate, as SageMaker Clarify's bias reports aim
  for); **cleared** when the point estimate is <= 0.75·t or fewer than two groups are
  sufficient.
* disparate impact (subject = ``attribute=group``, one per sufficient group other than
  the reference): DI = selection rate / reference group's (configured, else the most
  favoured sufficient group); interval = (low_g / high_ref, high_g / low_ref) from the two
  Wilson intervals (Wilson 1927), a conservative (Bonferroni-like) bound; **breached** when
  the upper bound is below t (default 0.8, the four-fifths rule); **cleared** when
  DI >= 1 − 0.75·(1 − t) (0.85 for t = 0.8). Insufficient groups get no evaluation.

Both intervals take each group's rate with its **design effect** φ (``DesignEffects``,
estimated by :class:`~watchkeeper.stats.dispersion.Overdispersion` from the model's recent
windows): the counts x/φ and n/φ, so that rows that come in correlated clusters (repeat
customers) widen the interval instead of raising false alarms. φ = 1 (no change) unless
the windows show over-dispersion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

from watchkeeper.config import FairnessConfig
from watchkeeper.monitor.alerts import Evaluation
from watchkeeper.stats.fairness import Disparity, FairnessReport, Gap, GroupFairnessAggregate, GroupMetrics, Rate
from watchkeeper.stats.intervals import newcombe_interval, wilson_interval

__all__ = [
    "DesignEffects",
    "disparate_impact_interval",
    "fairness_evaluations",
    "fairness_tests",
]

CLEAR_FRACTION = 0.75
_RATES = ("selection_rate", "tpr", "fpr", "fnr", "precision", "accuracy")

DesignEffects = Mapping[tuple[str, str, str], float]
"""(subject, group, rate) → the design effect of that group's rate; absent means 1."""


def _widened(rate: Rate, phi: float, confidence: float) -> Rate:
    """The rate with its Wilson interval at the effective counts x/φ, n/φ (φ = 1: unchanged)."""
    if phi <= 1.0:
        return rate
    low, high = wilson_interval(rate.successes / phi, rate.n / phi, confidence)
    return Rate(rate.value, rate.successes, rate.n, low, high)


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _rate(rate: Rate) -> dict[str, Any]:
    return {"value": rate.value, "successes": rate.successes, "n": rate.n, "interval": [rate.low, rate.high]}


def _group(g: GroupMetrics) -> dict[str, Any]:
    return {
        "count": g.count,
        "n_labeled": g.n_labeled,
        "sufficient": g.sufficient,
        "sufficient_selection": g.sufficient_selection,
        "status": "ok" if g.sufficient and g.sufficient_selection else "insufficient data",
        **{name: _rate(getattr(g, name)) for name in _RATES},
        "mean_score": g.mean_score,
        "observed_positive_rate": g.observed_positive_rate,
        "disparate_impact": _num(g.disparate_impact),
        "four_fifths_violation": g.four_fifths_violation,
    }


def _gap(gap: Gap | None) -> dict[str, Any] | None:
    if gap is None:
        return None
    return {
        "rate": gap.rate,
        "group_max": gap.group_max,
        "group_min": gap.group_min,
        "difference": gap.difference,
        "interval": [gap.low, gap.high],
    }


def _disparity(sufficient: Disparity, everyone: Disparity, report: FairnessReport) -> dict[str, Any]:
    out = {
        "difference": _num(sufficient.difference_between_groups),
        "ratio": _num(sufficient.ratio_between_groups),
        "difference_to_overall": _num(sufficient.difference_to_overall),
        "groups": list(sufficient.groups),
        "gap": _gap(sufficient.gap),
        "difference_all_groups": _num(everyone.difference_between_groups),
    }
    if sufficient.metric == "equalized_odds":
        members = [report.group(g) for g in sufficient.groups]
        out["components"] = {rate: _gap(_extreme_gap(report, members, rate)) for rate in ("tpr", "fpr")}
    return out


def _extreme_gap(report: FairnessReport, members: list[GroupMetrics], rate: str) -> Gap | None:
    if len(members) < 2:
        return None
    top = max(members, key=lambda g: getattr(g, rate).value)
    bottom = min(members, key=lambda g: getattr(g, rate).value)
    return report.compare(rate, top.group, bottom.group)


def _compute(
    subject: str, aggregate: GroupFairnessAggregate, config: FairnessConfig, confidence: float
) -> tuple[FairnessReport, str]:
    """The report, with the configured reference group when it is present (else most favoured)."""
    reference = config.reference_group.get(subject)
    if reference is not None:
        try:
            return aggregate.compute(config.min_support, confidence, reference), "configured"
        except ValueError:
            pass  # not seen in this window
    note = "most_favoured" if reference is None else f"most_favoured (configured {reference!r} absent)"
    return aggregate.compute(config.min_support, confidence, None), note


def fairness_tests(aggregates: Mapping[str, GroupFairnessAggregate], config: FairnessConfig) -> int:
    """How many tests the window's fairness verdicts make (for the family-wise level).

    Per subject: one per difference metric (equalized odds: two, its TPR and FPR gaps) and,
    for disparate impact, one per group but the reference.
    """
    if not config.enabled:
        return 0
    per_metric = {"demographic_parity_difference": 1, "equalized_odds_difference": 2, "equal_opportunity_difference": 1}
    total = 0
    for aggregate in aggregates.values():
        for metric in config.metrics:
            total += max(aggregate.n_groups - 1, 0) if metric == "disparate_impact" else per_metric[metric]
    return total


def _report(subject: str, report: FairnessReport, reference_note: str) -> dict[str, Any]:
    s, a = report.sufficient_groups, report.all_groups
    return {
        "attribute": subject,
        "min_support": report.min_support,
        "confidence": report.confidence,
        "reference_group": report.reference_group,
        "reference_group_source": reference_note,
        "overall": _group(report.overall),
        "groups": {g.group: _group(g) for g in report.groups},
        "pooled": _group(report.pooled) if report.pooled is not None else None,
        "pooled_distinct_groups": report.pooled_distinct_groups,
        "insufficient_groups": list(report.insufficient_groups),
        "disparities": {
            "demographic_parity_difference": _disparity(s.demographic_parity, a.demographic_parity, report),
            "equalized_odds_difference": _disparity(s.equalized_odds, a.equalized_odds, report),
            "equal_opportunity_difference": _disparity(s.equal_opportunity, a.equal_opportunity, report),
        },
    }


_DIFFERENCES: dict[str, tuple[str, str]] = {
    "demographic_parity_difference": ("demographic_parity", "count"),
    "equalized_odds_difference": ("equalized_odds", "n_labeled"),
    "equal_opportunity_difference": ("equal_opportunity", "n_labeled"),
}


def _difference_evaluation(
    metric: str,
    subject: str,
    report: FairnessReport,
    config: FairnessConfig,
    window: tuple[str, str, float, float],
    effects: DesignEffects,
) -> Evaluation:
    model_id, model_version, start, end = window
    field_name, n_field = _DIFFERENCES[metric]
    disparity: Disparity = getattr(report.sufficient_groups, field_name)
    tol = config.tolerance[metric]
    gap = disparity.gap
    observed = _num(disparity.difference_between_groups)
    interval = None if gap is None else (gap.low, gap.high)
    phis = (1.0, 1.0)
    if gap is not None:
        phis = (
            effects.get((subject, gap.group_max, gap.rate), 1.0),
            effects.get((subject, gap.group_min, gap.rate), 1.0),
        )
        if max(phis) > 1.0:
            a, b = getattr(report.group(gap.group_max), gap.rate), getattr(report.group(gap.group_min), gap.rate)
            interval = newcombe_interval(
                a.successes / phis[0], a.n / phis[0], b.successes / phis[1], b.n / phis[1], report.confidence
            )
    breached = interval is not None and interval[0] > tol
    cleared = gap is None or observed is None or observed <= CLEAR_FRACTION * tol
    details: dict[str, Any] = {
        "tolerance": tol,
        "clear_threshold": CLEAR_FRACTION * tol,
        "groups": list(disparity.groups),
        "insufficient_groups": list(report.insufficient_groups),
        "min_support": report.min_support,
        "difference_all_groups": _num(getattr(report.all_groups, field_name).difference_between_groups),
    }
    if gap is not None and interval is not None:
        hi, lo = report.group(gap.group_max), report.group(gap.group_min)
        details.update(
            rate=gap.rate,
            group_max=gap.group_max,
            group_min=gap.group_min,
            rate_max=getattr(hi, gap.rate).value,
            rate_min=getattr(lo, gap.rate).value,
            n_max=getattr(hi, gap.rate).n,
            n_min=getattr(lo, gap.rate).n,
            design_effect={gap.group_max: phis[0], gap.group_min: phis[1]},
        )
        summary = (
            f"{model_id}: {metric} for {subject} is {gap.difference:.3f} "
            f"({gap.group_max} {details['rate_max']:.3f} vs {gap.group_min} {details['rate_min']:.3f} {gap.rate})"
        )
        description = (
            f"{gap.rate} of '{gap.group_max}' ({details['rate_max']:.4f}, n={details['n_max']}) minus "
            f"'{gap.group_min}' ({details['rate_min']:.4f}, n={details['n_min']}) = {gap.difference:.4f}, "
            f"{report.confidence:.6g} Newcombe interval [{interval[0]:.4f}, {interval[1]:.4f}]"
            f"{_design_note(phis)}; alert when the interval is entirely above {tol}. Groups with fewer than "
            f"{report.min_support} rows are left out: {list(report.insufficient_groups) or 'none'}."
        )
    else:
        summary = f"{model_id}: {metric} for {subject}: fewer than two groups with enough data"
        description = (
            f"Fewer than two groups of '{subject}' reach min_support={report.min_support}; "
            f"insufficient: {list(report.insufficient_groups)}."
        )
    return Evaluation(
        model_id=model_id,
        model_version=model_version,
        monitor="fairness",
        metric=metric,
        subject=subject,
        observed=observed,
        threshold=tol,
        comparator=">",
        breached=breached,
        cleared=cleared,
        window_start=start,
        window_end=end,
        n=int(getattr(report.overall, n_field)),
        severity=config.severity,
        summary=summary,
        description=description,
        interval=interval,
        details=details,
    )


def _design_note(phis: tuple[float, ...]) -> str:
    """How the interval was widened, for the description (nothing when it was not)."""
    if max(phis) <= 1.0:
        return ""
    return f" with counts divided by the design effects {', '.join(f'{phi:.2f}' for phi in phis)} (clustered rows)"


def disparate_impact_interval(group: Rate, reference: Rate) -> tuple[float, float] | None:
    """(low_g / high_ref, high_g / low_ref) from the Wilson bounds; None if low_ref == 0."""
    if reference.low <= 0.0 or reference.high <= 0.0:
        return None
    return group.low / reference.high, group.high / reference.low


def _impact_evaluations(
    subject: str,
    report: FairnessReport,
    config: FairnessConfig,
    window: tuple[str, str, float, float],
    effects: DesignEffects,
) -> list[Evaluation]:
    model_id, model_version, start, end = window
    if report.reference_group is None:
        return []
    floor = config.tolerance["disparate_impact"]
    clear = 1.0 - CLEAR_FRACTION * (1.0 - floor)
    ref = report.group(report.reference_group)
    out = []
    for g in report.groups:
        if g.group == ref.group or not g.sufficient_selection or g.disparate_impact is None:
            continue
        phis = (
            effects.get((subject, g.group, "selection_rate"), 1.0),
            effects.get((subject, ref.group, "selection_rate"), 1.0),
        )
        interval = disparate_impact_interval(
            _widened(g.selection_rate, phis[0], report.confidence),
            _widened(ref.selection_rate, phis[1], report.confidence),
        )
        di = g.disparate_impact
        breached = interval is not None and interval[1] < floor
        out.append(
            Evaluation(
                model_id=model_id,
                model_version=model_version,
                monitor="fairness",
                metric="disparate_impact",
                subject=f"{subject}={g.group}",
                observed=di,
                threshold=floor,
                comparator="<",
                breached=breached,
                cleared=di >= clear,
                window_start=start,
                window_end=end,
                n=g.count,
                severity=config.severity,
                summary=(
                    f"{model_id}: disparate impact of {subject}={g.group} is {di:.3f} "
                    f"(selection {g.selection_rate.value:.3f} vs {ref.group} {ref.selection_rate.value:.3f})"
                ),
                description=(
                    f"Selection rate of '{g.group}' ({g.selection_rate.value:.4f}, n={g.count}) over that of the "
                    f"reference '{ref.group}' ({ref.selection_rate.value:.4f}, n={ref.count}) = {di:.4f}; "
                    f"ratio bounds from the Wilson intervals {interval and [round(v, 4) for v in interval]}"
                    f"{_design_note(phis)}; "
                    f"alert when the upper bound is below {floor} (four-fifths rule)."
                ),
                interval=interval,
                details={
                    "tolerance": floor,
                    "clear_threshold": clear,
                    "group": g.group,
                    "reference_group": ref.group,
                    "rate": g.selection_rate.value,
                    "reference_rate": ref.selection_rate.value,
                    "n": g.count,
                    "n_reference": ref.count,
                    "design_effect": {g.group: phis[0], ref.group: phis[1]},
                    "insufficient_groups": list(report.insufficient_groups),
                },
            )
        )
    return out


def fairness_evaluations(
    model_id: str,
    model_version: str,
    window_start: float,
    window_end: float,
    aggregates: Mapping[str, GroupFairnessAggregate],
    config: FairnessConfig,
    z_critical: float | None = None,
    effects: DesignEffects | None = None,
) -> tuple[dict[str, Any], list[Evaluation]]:
    """The window's fairness report (JSON-able, keyed by attribute) and its evaluations.

    ``aggregates`` maps the subject (``"race"``, ``"race|sex"``) to the merged aggregate
    of the window. Evaluations: one per (attribute, difference metric), one per
    (attribute, sufficient non-reference group) for disparate impact. None when disabled.
    The report's intervals are at ``config.confidence``; the verdicts use intervals at the
    one-sided level ``z_critical`` (the family-wise split of the label false-alarm rate,
    :func:`fairness_tests`) when given, with each group's rate widened by its design
    effect in ``effects``.
    """
    effects = effects or {}
    window = (model_id, model_version, float(window_start), float(window_end))
    reports: dict[str, Any] = {}
    evaluations: list[Evaluation] = []
    decision_confidence = None if z_critical is None else 1.0 - 2.0 * NormalDist().cdf(-z_critical)
    for subject in sorted(aggregates):
        report, note = _compute(subject, aggregates[subject], config, config.confidence)
        reports[subject] = _report(subject, report, note)
        if not config.enabled:
            continue
        if decision_confidence is not None:
            report, _ = _compute(subject, aggregates[subject], config, decision_confidence)
        for metric in config.metrics:
            if metric == "disparate_impact":
                evaluations += _impact_evaluations(subject, report, config, window, effects)
            else:
                evaluations.append(_difference_evaluation(metric, subject, report, config, window, effects))
    summary = {
        "model_id": model_id,
        "model_version": model_version,
        "window_start": window[2],
        "window_end": window[3],
        "attributes": reports,
    }
    return summary, evaluations
