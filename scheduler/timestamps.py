"""Times as the API server writes them (RFC 3339: metav1.Time, metav1.MicroTime)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def parse_time(text: Any) -> float | None:
    """RFC 3339 to Unix seconds; None if absent or unreadable (a field anyone with write
    access may have mangled). A time without a zone is read as UTC, as the API server means it."""
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()
