"""Design effects of the fairness rates, learned from a model's final label windows.

For every (attribute, group) the selection rate, TPR and FPR of each final window without
a fairness breach go into an :class:`~watchkeeper.stats.dispersion.Overdispersion` of the
last ``fairness.dispersion_windows`` windows; its factor widens that group's intervals in
the fairness verdicts (:mod:`watchkeeper.monitor.fairness`). Windows that breached are
left out so that a real disparity does not pass for noise and hide itself; a group not
seen for that many windows is forgotten, so the state stays bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watchkeeper.config import DISPERSION_MIN_WINDOWS, FairnessConfig
from watchkeeper.monitor.fairness import DesignEffects
from watchkeeper.stats.dispersion import Overdispersion
from watchkeeper.stats.fairness import OTHER, GroupFairnessAggregate

__all__ = ["FairnessDispersion"]

_SEPARATOR = "\x1f"
MAX_RATES = 240  # (attribute, group, rate) histories kept: 80 groups' three rates, ~150 KB of state
_RATES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {  # rate → successes, trials, support
    "selection_rate": (("selected",), ("n",), "n"),
    "tpr": (("tp",), ("tp", "fn"), "n_labeled"),
    "fpr": (("fp",), ("fp", "tn"), "n_labeled"),
}


class FairnessDispersion:
    """Per (attribute, group, rate): its recent windows' counts and windows since last seen."""

    def __init__(self, config: FairnessConfig, state: Mapping[str, Any] | None = None) -> None:
        self.history = config.dispersion_windows
        self.min_support = config.min_support
        state = state or {}
        self.rates: dict[str, Overdispersion] = {}
        self.unseen: dict[str, int] = {}
        if self.history:
            for key, stored in state.get("rates", {}).items():
                self.rates[key] = self._new(stored["windows"])
                self.unseen[key] = int(stored.get("unseen", 0))

    def _new(self, windows: Any = ()) -> Overdispersion:
        return Overdispersion(self.history, DISPERSION_MIN_WINDOWS, windows=windows)

    def effects(self) -> DesignEffects:
        """(attribute, group, rate) → design effect, for the rates whose windows show one."""
        found: dict[tuple[str, str, str], float] = {}
        for key, rate in self.rates.items():
            factor = rate.factor
            if factor > 1.0:
                subject, group, name = key.split(_SEPARATOR)
                found[(subject, group, name)] = factor
        return found

    def update(self, aggregates: Mapping[str, GroupFairnessAggregate]) -> None:
        """Add a final window's counts (of every named group with enough rows; the pooled rest is left out)."""
        if not self.history:
            return
        seen: set[str] = set()
        for subject, aggregate in aggregates.items():
            for group, row in aggregate.counts().items():
                if group == OTHER:
                    continue
                for name, (successes, trials, support) in _RATES.items():
                    if row[support] < self.min_support:
                        continue  # an insufficient group takes part in no verdict
                    key = _SEPARATOR.join((subject, group, name))
                    rate = self.rates.get(key) or self.rates.setdefault(key, self._new())
                    rate.update(int(sum(row[c] for c in successes)), int(sum(row[c] for c in trials)))
                    seen.add(key)
        for key in list(self.rates):
            self.unseen[key] = 0 if key in seen else self.unseen.get(key, 0) + 1
        ranked = sorted(self.rates, key=lambda k: (self.unseen[k], -sum(n for _, n in self.rates[k].windows), k))
        for key in ranked[MAX_RATES:] + [k for k in ranked[:MAX_RATES] if self.unseen[k] > self.history]:
            del self.rates[key], self.unseen[key]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rates": {
                key: {"windows": rate.to_list(), "unseen": self.unseen.get(key, 0)}
                for key, rate in sorted(self.rates.items())
            }
        }
