"""The alert state machine: fires after for_windows, resolves after resolve_windows, never flaps;
every published transition has its own CloudEvent id, the same for the same verdicts."""

from __future__ import annotations

import itertools

import orjson
from hypothesis import given
from hypothesis import strategies as st

from watchkeeper.events import alert_cloudevent
from watchkeeper.monitor.alerts import AlertBook, AlertRule, AlertState, Evaluation, step

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


def _evaluation(end: float, *, breached: bool, cleared: bool) -> Evaluation:
    return Evaluation(
        model_id="m",
        model_version="1",
        monitor="drift",
        metric="cusum",
        subject="x",
        observed=9.0 if breached else None,
        threshold=5.0,
        comparator=">=",
        breached=breached,
        cleared=cleared,
        window_start=end - 60,
        window_end=end,
        n=1000,
        severity="warning",
        summary="s",
        description="d",
    )


def _ids(book: AlertBook, verdicts: list[tuple[float, bool, bool]]) -> list[str]:
    alerts = [book.observe(_evaluation(end, breached=b, cleared=c)) for end, b, c in verdicts]
    return [alert_cloudevent(a, "watchkeeper").id for a in alerts if a is not None]


def test_fire_resolve_fire_in_one_window_gives_three_ids() -> None:
    """Windows judged out of order: fire at 180, resolve at 120, fire at 180 again."""
    book = AlertBook(rule=AlertRule(for_windows=2, resolve_windows=1))
    verdicts = [(60.0, True, False), (180.0, True, False), (120.0, False, True), (120.0, True, False)]
    verdicts.append((180.0, True, False))
    alerts = [book.observe(_evaluation(end, breached=b, cleared=c)) for end, b, c in verdicts]
    published = [a for a in alerts if a is not None]
    assert [(a.status, a.window.end.timestamp(), a.sequence) for a in published] == [
        ("firing", 180.0, 1),
        ("resolved", 120.0, 2),
        ("firing", 180.0, 3),
    ]
    ids = [alert_cloudevent(a, "watchkeeper").id for a in published]
    assert len(set(ids)) == 3


verdict_lists = st.lists(
    st.tuples(st.sampled_from([60.0, 120.0, 180.0]), st.booleans(), st.booleans()).map(
        lambda v: (v[0], v[1], v[2] and not v[1])
    ),
    max_size=40,
)


@given(rules, verdict_lists, st.integers(0, 40))
def test_alert_ids_are_unique_and_survive_a_restore(
    rule: AlertRule, verdicts: list[tuple[float, bool, bool]], cut: int
) -> None:
    """Any order of windows: every published alert has its own id; the same verdicts give the
    same ids, also when the book is saved and restored (as stage-2 state) in between."""
    ids = _ids(AlertBook(rule=rule), verdicts)
    assert len(set(ids)) == len(ids)
    first = AlertBook(rule=rule)
    head = _ids(first, verdicts[:cut])
    restored = AlertBook.from_dict(orjson.loads(orjson.dumps(first.to_dict())), rule, {})
    assert head + _ids(restored, verdicts[cut:]) == ids


def test_a_book_stored_before_sequences_existed_restores_and_counts_from_one() -> None:
    rule = AlertRule(for_windows=1, resolve_windows=1)
    stored = {"states": {_evaluation(60.0, breached=True, cleared=False).fingerprint: {
        "status": "firing", "breach_streak": 1, "clear_streak": 0, "starts_at": 60.0, "last_sent_at": 60.0,
    }}}  # fmt: skip
    book = AlertBook.from_dict(stored, rule, {})
    resolved = book.observe(_evaluation(120.0, breached=False, cleared=True))
    assert resolved is not None and resolved.status == "resolved" and resolved.sequence == 1
