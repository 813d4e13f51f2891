"""Label entries group a batch's joined rows by (window start, checkpoint) with one sort; the
groups must be those a mask per distinct key would select, in the same order, each group's
rows in input order (the fairness groups' first-seen order depends on it)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from watchkeeper.monitor.labels import _row_groups


@given(st.lists(st.tuples(st.sampled_from([0.0, 10.0, 20.0, -10.0]), st.integers(0, 3), st.booleans()), max_size=60))
def test_rows_are_grouped_as_a_mask_per_key_groups_them(rows: list[tuple[float, int, bool]]) -> None:
    starts = np.array([r[0] for r in rows], dtype=np.float64)
    checkpoints = np.array([r[1] for r in rows], dtype=np.int64)
    usable = np.array([r[2] for r in rows], dtype=bool)
    expected = [
        np.flatnonzero(usable & (starts == start) & (checkpoints == checkpoint))
        for start, checkpoint in sorted({(s, c) for s, c, u in rows if u})
    ]
    got = _row_groups(usable, starts, checkpoints)
    assert [g.tolist() for g in got] == [e.tolist() for e in expected]
    windows = _row_groups(usable, starts)
    assert [g.tolist() for g in windows] == [
        np.flatnonzero(usable & (starts == s)).tolist() for s in sorted(set(starts[usable].tolist()))
    ]
