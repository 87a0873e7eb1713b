"""Values of command-line flags: numbers, ranges and choices, parsed with errors that name the
flag and what it allows (ValueError; the command line reports it in one line, exit code 2).
Shared by the command line and the experiments' own argument groups."""

from __future__ import annotations

import math
from fractions import Fraction


def number(text: str, kind, name: str):
    """`text` as `kind` (int, or float: exact fractions such as 1/3 allowed), finite."""
    try:
        value = kind(Fraction(text)) if kind is float else kind(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"--{name}: {text!r} is not a valid {kind.__name__}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"--{name}: {text!r} must be finite")
    return value


def parse_values(text: str, kind=float, name: str = "value", allow_per_n: bool = False) -> tuple:
    """'start:stop:step' (inclusive; step 1 if omitted) or a comma list. With allow_per_n,
    entries may be 'c/n' (gamma = c / n)."""
    text = text.strip()
    if not text:
        raise ValueError(f"--{name}: empty value")
    if ":" in text:
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"--{name}: {text!r} must be start:stop or start:stop:step")
        start, stop = (number(p, kind, name) for p in parts[:2])
        step = number(parts[2], kind, name) if len(parts) == 3 else kind(1)
        if step <= 0:
            raise ValueError(f"--{name}: step {parts[2]!r} must be > 0")
        if stop < start:
            raise ValueError(f"--{name}: stop {parts[1]!r} is below start {parts[0]!r}")
        count = (stop - start) / step
        if abs(count - round(count)) > 1e-9:
            raise ValueError(f"--{name}: {text!r}: (stop - start) is not a multiple of step")
        if round(count) + 1 > 100_000:
            raise ValueError(f"--{name}: {text!r} has more than 100000 values")
        vals = [start + i * step for i in range(round(count) + 1)]
        return tuple(round(v, 12) if kind is float else v for v in vals)
    out = []
    for item in text.split(","):
        item = item.strip()
        if allow_per_n and item.replace(" ", "").endswith("/n"):
            number(item.replace(" ", "")[:-2], float, name)
            out.append(item.replace(" ", ""))
        else:
            out.append(number(item, kind, name))
    return tuple(out)


def enum_choice(enum_cls, text: str, name: str):
    """The member of `enum_cls` named `text` (case and '-'/'_' insensitive)."""
    try:
        return enum_cls[text.upper().replace("-", "_")]
    except KeyError:
        allowed = ", ".join(m.name.lower() for m in enum_cls)
        raise ValueError(f"--{name}: {text!r} is not one of {allowed}") from None


def choice(text: str, allowed, name: str) -> str:
    if text not in allowed:
        raise ValueError(f"--{name}: {text!r} is not one of {', '.join(allowed)}")
    return text


def positive(text: str | None, kind, name: str):
    """None stays None (the flag was not given); else a number > 0."""
    if text is None:
        return None
    v = number(text, kind, name)
    if not v > 0:
        raise ValueError(f"--{name}: {text} must be > 0")
    return v
