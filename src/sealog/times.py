"""Times as Sealog keeps them (integer microseconds since the epoch) and shows them (RFC 3339)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Digits are [0-9], not \d (which takes any script's), and the match is whole: `$` would
# allow a trailing newline.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
RANGE_PRESETS = ("24h", "7d", "30d", "month", "custom")


class TimeError(ValueError):
    """Raised for a time, range or time zone that cannot be understood."""


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


_DAY_US = 86_400 * 10**6
# Day numbers and date strings repeat across events, so both directions are cached.
_days_of_date: dict[tuple[str, str, str], int] = {}
_date_of_days: dict[int, str] = {}


def _days(year: str, month: str, day: str, text: str) -> int:
    key = (year, month, day)
    days = _days_of_date.get(key)
    if days is None:
        try:
            moment = datetime(int(year), int(month), int(day), tzinfo=UTC)
        except ValueError as exc:
            raise TimeError(f"{text!r} is not a valid date and time: {exc}") from None
        days = (moment - _EPOCH).days
        if len(_days_of_date) < 100_000:
            _days_of_date[key] = days
    return days


def parse_rfc3339(text: str) -> int:
    """Microseconds since the epoch of an RFC 3339 time with an offset; refuses local times."""
    if not isinstance(text, str):
        raise TimeError("must be an RFC 3339 time string")
    match = _RFC3339.fullmatch(text)
    if not match:
        raise TimeError(
            f"{text!r} is not an RFC 3339 time with an offset, e.g. 2026-02-13T10:28:22Z"
        )
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    hours, minutes, seconds = int(hour), int(minute), int(second)
    if hours > 23 or minutes > 59 or seconds > 60:
        raise TimeError(f"{text!r} is not a valid time of day")
    seconds = min(seconds, 59)  # a leap second is stored as :59
    total = (_days(year, month, day, text) * 86_400 + hours * 3600 + minutes * 60 + seconds)
    if offset not in ("Z", "z"):
        off_h, off_m = int(offset[1:3]), int(offset[4:6])
        if off_h > 23 or off_m > 59:
            raise TimeError(f"{text!r} has an invalid UTC offset")
        shift = off_h * 3600 + off_m * 60
        total -= shift if offset[0] == "+" else -shift
    micros = int(fraction[1:7].ljust(6, "0")) if fraction else 0
    return total * 10**6 + micros


def format_rfc3339(us: int) -> str:
    """RFC 3339 UTC with exactly six fractional digits, e.g. 2026-02-13T10:28:22.000000Z."""
    days, rest = divmod(us, _DAY_US)
    date = _date_of_days.get(days)
    if date is None:
        date = (_EPOCH + timedelta(days=days)).strftime("%Y-%m-%d")
        if len(_date_of_days) < 100_000:
            _date_of_days[days] = date
    seconds, micros = divmod(rest, 10**6)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{date}T{hours:02d}:{minutes:02d}:{seconds:02d}.{micros:06d}Z"


def zone(name: str | None) -> ZoneInfo:
    """The IANA time zone called name (UTC when None); refuses unknown names."""
    if name is None or name == "":
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    # A name too long or odd for the file system surfaces as OSError, not as "not found".
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise TimeError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin"
        ) from None


@dataclass(frozen=True)
class TimeRange:
    """A half-open window [start_us, end_us); end_us None means no upper bound."""

    start_us: int
    end_us: int | None


def resolve_range(
    preset: str | None,
    *,
    start: str | None = None,
    end: str | None = None,
    tz: str | None = None,
    now: int | None = None,
) -> TimeRange:
    """The window a range preset names; `custom` needs `from` and takes an optional `to`."""
    preset = preset or "24h"
    now = now_us() if now is None else now
    tzinfo = zone(tz)
    if preset != "custom" and (start is not None or end is not None):
        raise TimeError(f"'from' and 'to' go with range=custom, not range={preset}")
    if preset == "24h":
        return TimeRange(now - 24 * 3600 * 10**6, None)
    if preset == "7d":
        return TimeRange(now - 7 * 24 * 3600 * 10**6, None)
    if preset == "30d":
        return TimeRange(now - 30 * 24 * 3600 * 10**6, None)
    if preset == "month":
        local = (_EPOCH + timedelta(microseconds=now)).astimezone(tzinfo)
        first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return TimeRange((first - _EPOCH) // timedelta(microseconds=1), None)
    if preset == "custom":
        if start is None:
            raise TimeError("range=custom needs 'from' (and optionally 'to')")
        start_us = parse_rfc3339(start)
        end_us = parse_rfc3339(end) if end is not None else None
        if end_us is not None and end_us <= start_us:
            raise TimeError("'to' must be later than 'from'")
        return TimeRange(start_us, end_us)
    raise TimeError(f"unknown range {preset!r}; use one of {', '.join(RANGE_PRESETS)}")
