"""The alert state machine: fires after for_windows, resolves after resolve_windows, never flaps."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from watchkeeper.monitor.alerts import AlertRule, AlertState, step

rules = st.builds(AlertRule, for_windows=st.integers(1, 4), resolve_windows=st.integers(1, 4))


def _run(rule: AlertRule, verdicts: list[tuple[bool, bool]]) -> list[str | None]:
    state, out = AlertState(), []
    for i, (breached, cleared) in enumerate(verdicts):
        state, transition = step(state, breached=breached, cleared=cleared, at=float(i), rule=rule)
        out.append(transition)
    return out


@given(rules, st.lists(st.sampled_from([(True, False), (False, False)]), max_size=40))
def test_values_inside_the_hysteresis_band_never_resolve(rule: AlertRule, verdicts: list[tuple[bool, bool]]) -> None:
    """Breaches and in-band values (not breached, not cleared) can fire once and never resolve."""
    transitions = [t for t in _run(rule, verdicts) if t]
    assert transitions in ([], ["firing"])


@given(rules, st.lists(st.sampled_from([(True, False), (False, False), (False, True)]), max_size=60))
def test_transitions_alternate_and_respect_the_streaks(rule: AlertRule, verdicts: list[tuple[bool, bool]]) -> None:
    transitions = _run(rule, verdicts)
    published = [t for t in transitions if t]
    assert all(a != b for a, b in itertools.pairwise(published))
    assert not published or published[0] == "firing"
    for i, transition in enumerate(transitions):
        if transition == "firing":
            assert all(b for b, _ in verdicts[i - rule.for_windows + 1 : i + 1])
        if transition == "resolved":
            assert all(c and not b for b, c in verdicts[i - rule.resolve_windows + 1 : i + 1])


def test_repeat_interval_re_announces_a_firing_alert() -> None:
    rule = AlertRule(for_windows=1, resolve_windows=1, repeat_interval=3.0)
    assert _run(rule, [(True, False)] * 8) == ["firing", None, None, "repeat", None, None, "repeat", None]


def test_a_repeated_announcement_is_marked_as_a_repeat() -> None:
    from watchkeeper.monitor.alerts import AlertBook, Evaluation

    book = AlertBook(rule=AlertRule(for_windows=1, resolve_windows=1, repeat_interval=60.0))

    def evaluation(end: float) -> Evaluation:
        return Evaluation(
            model_id="m",
            model_version="1",
            monitor="drift",
            metric="psi",
            subject="x",
            observed=0.3,
            threshold=0.1,
            comparator=">=",
            breached=True,
            cleared=False,
            window_start=end - 60,
            window_end=end,
            n=1000,
            severity="warning",
            summary="s",
            description="d",
        )

    first, second = book.observe(evaluation(60.0)), book.observe(evaluation(120.0))
    assert first is not None and "repeat" not in first.details
    assert second is not None and second.status == "firing" and second.details["repeat"] is True
