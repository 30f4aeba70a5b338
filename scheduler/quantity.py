"""Strict parsing of Kubernetes quantities used in annotations ("16Gi", "40G", "1.5Ti").

Annotations come from users, so anything that is not a plain, positive, finite
byte count below a sanity bound is rejected with a message that says why.
"""
from __future__ import annotations

import re
from decimal import Decimal, DecimalException
from typing import Any

_SUFFIX = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_RE = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+))?\s*([a-zA-Z]*)\s*$")

# No single GPU or model is bigger than this; anything larger is a typo or an attack.
MAX_BYTES = 2**50  # 1 PiB


class QuantityError(ValueError):
    """The text is not a usable byte quantity; the message says why."""


def _value(text: str, what: str, suffixes: dict[str, Any], not_one: str) -> Decimal:
    """The quantity's value in units of its suffix table; `not_one` ends the message for a
    text that is not such a quantity."""
    if len(text) > 64:
        raise QuantityError(f"{what}: {len(text)} characters is too long for a quantity")
    m = _RE.match(text)
    if not m or m.group(3) not in suffixes:
        raise QuantityError(f"{what}: {text!r} {not_one}")
    try:
        return Decimal(m.group(1)) * (Decimal(10) ** int(m.group(2) or 0)) * suffixes[m.group(3)]
    except (DecimalException, OverflowError) as exc:  # InvalidOperation, and Overflow for '1e999999999'
        raise QuantityError(f"{what}: {text!r} is not a number") from exc


def parse_bytes(text: str, *, what: str = "quantity", max_bytes: int = MAX_BYTES) -> int:
    """Return the byte count of a Kubernetes quantity, rounded up to a whole byte."""
    if not isinstance(text, str):
        raise QuantityError(f"{what}: expected a string such as '16Gi', got {type(text).__name__}")
    value = _value(text, what, _SUFFIX, "is not a quantity (use e.g. '16Gi', '40G' or '1073741824')")
    if value <= 0:
        raise QuantityError(f"{what}: {text!r} must be positive")
    if value > max_bytes:
        raise QuantityError(f"{what}: {text!r} is larger than {max_bytes} bytes")
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def format_bytes(n: float) -> str:
    """Human-readable binary size for messages and Events ("40Gi", "1.5Gi", "512Mi")."""
    for unit, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if abs(n) >= size:
            v = n / size
            return f"{v:.0f}{unit}" if abs(v - round(v)) < 0.05 else f"{v:.1f}{unit}"
    return f"{int(n)}"


# CPU quantities ("500m", "2", "1.5", "100u"): Kubernetes also allows the small decimal
# suffixes here, which byte quantities never use.
# In millicores, so the scaling happens inside _value's overflow guard ("9e999999" overflows there).
_MILLI_SUFFIX = {"n": Decimal("1e-6"), "u": Decimal("1e-3"), "m": Decimal(1),
                 **{k: Decimal(v) * 1000 for k, v in _SUFFIX.items()}}
# No node offers a million cores; a larger figure is a typo or an attack.
MAX_MILLICORES = 10**9


def _nonnegative(text: object, what: str, kind: str, example: str) -> tuple[str, Decimal]:
    """(the text, its value in thousandths of the unit) of a CPU or memory quantity: zero
    and the small decimal suffixes allowed, as the API server allows them; not a quantity
    or negative: QuantityError. A number (the JSON of `cpu: 2`) is read as its text."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise QuantityError(f"{what}: expected a quantity such as {example}, got {type(text).__name__}")
    text = str(text)
    value = _value(text, what, _MILLI_SUFFIX, f"is not a {kind} quantity (use e.g. {example})")
    if value < 0:
        raise QuantityError(f"{what}: {text!r} must not be negative")
    return text, value


def parse_memory(text: object, *, what: str = "memory", max_bytes: int = MAX_BYTES) -> int:
    """Bytes of a Kubernetes memory request or allocatable, rounded up as
    resource.Quantity.Value rounds ("1500m" is 2). Unlike parse_bytes, zero and the small
    decimal suffixes are allowed; negative, unparsable or above `max_bytes` raise
    QuantityError."""
    text, milli = _nonnegative(text, what, "memory", "'16Gi' or '512Mi'")
    if milli > Decimal(max_bytes) * 1000:
        raise QuantityError(f"{what}: {text!r} is larger than {max_bytes} bytes")
    return int((milli / 1000).to_integral_value(rounding="ROUND_CEILING"))


def parse_millicores(text: object, *, what: str = "cpu", max_milli: int = MAX_MILLICORES) -> int:
    """Millicores of a Kubernetes CPU quantity, rounded up as resource.Quantity.MilliValue
    rounds ("1n" is 1m). Zero is allowed (a request of 0); negative, unparsable or above
    `max_milli` raise QuantityError."""
    text, value = _nonnegative(text, what, "CPU", "'500m' or '2'")
    if value > max_milli:
        raise QuantityError(f"{what}: {text!r} is more than {max_milli // 1000} cores")
    return int(value.to_integral_value(rounding="ROUND_CEILING"))
