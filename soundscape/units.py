"""Parsing of what people type: durations (`90`, `90s`, `1.5m`, `10m`, `1h`, `1h30m`, `500ms`), times of
day (`21:30`, `07:00:15`), seeds, and cluster addresses (`host:port`)."""

from __future__ import annotations

import math
import re

from .errors import UsageError

# `ms` before `m`: the regex takes the first alternative that matches, and `1ms` is not `1m` then `s`.
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)?")
_SCALE = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}


def parse_duration(text: str | float | int, *, what: str = "duration") -> float:
    """Seconds in `text`; raises UsageError naming `what` when it is not a positive duration."""
    if isinstance(text, bool):
        raise UsageError(f"{what}: expected a duration like 90, 90s, 10m or 1h, got {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        s = str(text).strip().lower()
        pos, seconds = 0, 0.0
        while pos < len(s):
            m = _PART.match(s, pos)
            if not m or m.end() == pos:
                raise UsageError(f"{what}: expected a duration like 90, 90s, 10m, 1h or 500ms, got {text!r}")
            seconds += float(m.group(1)) * _SCALE[m.group(2)]
            pos = m.end()
            while pos < len(s) and s[pos] == " ":
                pos += 1
        if not s:
            raise UsageError(f"{what}: expected a duration like 90, 90s, 10m or 1h, got an empty value")
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"{what}: expected a positive duration like 90s or 10m, got {text!r}")
    return seconds


DAY_S = 86400.0
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")


def parse_time_of_day(text: str) -> float | None:
    """Seconds after midnight in `HH:MM` or `HH:MM:SS` (24-hour, local time), or None when `text` is not one.

    `24:00` is not a time of day (it is `00:00`); a minute or second past 59 is refused, not carried."""
    m = _CLOCK.match(text) if isinstance(text, str) else None
    if not m:
        return None
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if h > 23 or mi > 59 or s > 59:
        return None
    return float(h * 3600 + mi * 60 + s)


def time_of_day(epoch: float) -> float:
    """Seconds after local midnight at `epoch` (the local time zone, daylight saving included)."""
    import time

    lt = time.localtime(epoch)
    return lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec + (epoch % 1.0)


def format_time_of_day(seconds: float) -> str:
    """`HH:MM`, or `HH:MM:SS` when the seconds are not zero."""
    s = int(round(seconds)) % int(DAY_S)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}" if s else f"{h:02d}:{m:02d}"


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


MAX_SEED = 2**32 - 1  # numpy's SeedSequence and torch take any of these


def parse_seed(text: str) -> int:
    """A seed from text; raises ValueError saying what is expected (callers add which knob it is)."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"expected a whole number from 0 to {MAX_SEED}, got {text!r}")
    return value


def unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why `host:port` (or `ray://host:port`) takes no connection, or None: it does, or it is no such
    address (`auto`). Why: ray.init() given an address with nothing behind it retries for minutes,
    printing its own log lines; a TCP connect says the same in a few seconds."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None
