"""`alerts tail`'s one line: the window as times of day when it lies within a day, else with its dates.

A 30-day window used to print ``window=00:00:00-00:00:00``, which says nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from watchkeeper.events import AlertWindow, alert_cloudevent
from watchkeeper.notify.fake import sample_alert
from watchkeeper.tail import format_alert


def _line(start: datetime, size: timedelta) -> str:
    alert = sample_alert(window=AlertWindow(start=start, end=start + size, n=4812))
    return format_alert(orjson.loads(alert_cloudevent(alert, "watchkeeper").model_dump_json()))


@pytest.mark.parametrize(
    ("start", "size", "shown"),
    [
        (datetime(2026, 11, 23, 12, 0, tzinfo=UTC), timedelta(minutes=5), "12:00:00-12:05:00"),
        (datetime(2026, 11, 23, 23, 55, tzinfo=UTC), timedelta(minutes=5), "23:55:00-00:00:00"),
        (datetime(2026, 11, 23, 0, 0, tzinfo=UTC), timedelta(days=1), "2026-11-23T00:00:00-2026-11-24T00:00:00"),
        (datetime(2014, 6, 9, 0, 0, tzinfo=UTC), timedelta(days=30), "2014-06-09T00:00:00-2014-07-09T00:00:00"),
        (datetime(2026, 11, 23, 22, 0, tzinfo=UTC), timedelta(hours=4), "2026-11-23T22:00:00-2026-11-24T02:00:00"),
    ],
    ids=["5m", "5m-to-midnight", "1d", "30d", "across-midnight"],
)
def test_the_window_shows_dates_unless_it_lies_within_a_day(start: datetime, size: timedelta, shown: str) -> None:
    line = _line(start, size)
    assert line.startswith("ALERT FIRING   warning  credit-risk drift/psi subject=income observed=0.312 > 0.2 ")
    assert f" window={shown} n=4812" in line, line
