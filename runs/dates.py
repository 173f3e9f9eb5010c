"""Days typed into date filters (history, gallery, exports, usage, audit log).

A date picker lets people choose any day from 0001-01-01 to 9999-12-31, but a filter turns
the day into a range of datetimes: the midnight after 9999-12-31 cannot be computed
(``OverflowError``), and near year 1 the shift to UTC falls outside ``datetime`` too. No
run, output or audit entry of this site is older than 2000 or newer than 2099, so a day
outside that span is refused with a sentence, and the rest of the code never meets one.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.utils import timezone

EARLIEST = date(2000, 1, 1)
LATEST = date(2099, 12, 31)
FORMAT_HINT = "Dates must look like 2026-05-31."
RANGE_HINT = f"Pick a day between {EARLIEST:%d %b %Y} and {LATEST:%d %b %Y}."


class BadDay(ValueError):
    """A date filter that cannot be used; ``str()`` is the sentence to show next to it."""


def parse_day(value: str | None) -> date | None:
    """The day in ``value`` (ISO format), None when empty; ``BadDay`` when unusable."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadDay(FORMAT_HINT) from None
    if not EARLIEST <= day <= LATEST:
        raise BadDay(RANGE_HINT)
    return day


def day_start(day: date) -> datetime:
    """Midnight at the start of ``day`` in the site's time zone."""
    return timezone.make_aware(datetime.combine(day, time.min))


def day_end(day: date) -> datetime:
    """Midnight at the end of ``day`` (exclusive upper bound of a range of whole days)."""
    return day_start(day + timedelta(days=1))
