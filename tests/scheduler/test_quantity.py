from __future__ import annotations

import pytest

from scheduler.quantity import QuantityError, format_bytes, parse_bytes


@pytest.mark.parametrize("text,want", [
    ("16Gi", 16 * 2**30),
    ("40G", 40 * 10**9),
    ("1.5Ti", 3 * 2**39),          # 1.5 x 2^40
    ("1073741824", 2**30),
    ("512Mi", 2**29),
    ("1e9", 10**9),
    ("0.5Ki", 512),
    ("1.0000001", 2),               # rounded up to a whole byte
])
def test_parse(text, want):
    assert parse_bytes(text) == want


@pytest.mark.parametrize("text,msg", [
    ("-5Gi", "must be positive"),
    ("0", "must be positive"),
    ("1e30", "larger than"),
    ("abc", "is not a quantity"),
    ("16GB", "is not a quantity"),  # GB is not a Kubernetes suffix
    ("", "is not a quantity"),
    ("9" * 80, "too long"),
    ("2Ei", "larger than"),          # 2^61 > 1 PiB bound
])
def test_reject(text, msg):
    with pytest.raises(QuantityError, match=msg):
        parse_bytes(text, what="gpusched.io/gpu-memory")


def test_reject_non_string():
    with pytest.raises(QuantityError, match="expected a string"):
        parse_bytes(16)  # type: ignore[arg-type]


@pytest.mark.parametrize("n,want", [(40 * 2**30, "40Gi"), (1.5 * 2**30, "1.5Gi"), (512 * 2**20, "512Mi"), (100, "100")])
def test_format(n, want):
    assert format_bytes(n) == want


@pytest.mark.parametrize("text,want", [
    ("500m", 500), ("2", 2000), ("1.5", 1500), ("0", 0), ("1n", 1), ("100u", 1), ("1k", 1_000_000), (4, 4000),
])
def test_parse_millicores(text, want):
    from scheduler.quantity import parse_millicores
    assert parse_millicores(text) == want


@pytest.mark.parametrize("text", ["-1", "abc", "1e999999999", "2Gx", None, True, "1e400", "9" * 70, "9e999999"])
def test_parse_millicores_refuses_with_a_reason(text):
    from scheduler.quantity import QuantityError, parse_millicores
    with pytest.raises(QuantityError, match="cpu"):
        parse_millicores(text)


@pytest.mark.parametrize("text,want", [
    ("16Gi", 16 * 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), ("0", 0), ("1500m", 2), ("1e3", 1000),
    ("528272264Ki", 528272264 * 1024), (1024, 1024), ("1Pi", 2**50),
])
def test_parse_memory(text, want):
    """Memory requests and allocatable as the API server takes them: zero and the decimal
    suffixes allowed, rounded up to a whole byte (resource.Quantity.Value)."""
    from scheduler.quantity import parse_memory
    assert parse_memory(text) == want


@pytest.mark.parametrize("text,why", [
    ("-5Gi", "must not be negative"), ("1e30", "larger than"), ("2Pi", "larger than"), ("lots", "not a memory"),
    (None, "expected a quantity"), (True, "expected a quantity"), ("9e999999999", "memory"), ("9" * 70, "too long"),
])
def test_parse_memory_refuses_with_a_reason(text, why):
    from scheduler.quantity import QuantityError, parse_memory
    with pytest.raises(QuantityError, match=why):
        parse_memory(text)
