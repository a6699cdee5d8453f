"""Times as Sealog stores and shows them: integer microseconds since the Unix epoch, RFC 3339 UTC."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
RANGE_PRESETS = ("24h", "7d", "30d", "month", "custom")


class TimeError(ValueError):
    """Raised for a time, range or time zone that cannot be understood."""


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def parse_rfc3339(text: str) -> int:
    """Microseconds since the epoch of an RFC 3339 time with an offset; refuses local times."""
    if not isinstance(text, str):
        raise TimeError("must be an RFC 3339 time string")
    match = _RFC3339.match(text)
    if not match:
        raise TimeError(
            f"{text!r} is not an RFC 3339 time with an offset, e.g. 2026-02-13T10:28:22Z"
        )
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        base = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError as exc:
        raise TimeError(f"{text!r} is not a valid date and time: {exc}") from None
    micros = int((fraction or ".0")[1:].ljust(6, "0")[:6])
    if offset in ("Z", "z"):
        delta = timedelta(0)
    else:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise TimeError(f"{text!r} has an invalid UTC offset")
        delta = sign * timedelta(hours=hours, minutes=minutes)
    moment = base.replace(tzinfo=UTC) - delta
    return (moment - _EPOCH) // timedelta(microseconds=1) + micros


def format_rfc3339(us: int) -> str:
    """RFC 3339 UTC with exactly six fractional digits, e.g. 2026-02-13T10:28:22.000000Z."""
    moment = _EPOCH + timedelta(microseconds=us)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def zone(name: str | None) -> ZoneInfo:
    """The IANA time zone called name (UTC when None); refuses unknown names."""
    if name is None or name == "":
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin") from None


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
