import pytest

from scheduler.timestamps import parse_time

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize("text, want", [
    ("2027-01-15T08:00:00Z", T0),                    # metav1.Time
    ("2027-01-15T08:00:02.500000Z", T0 + 2.5),       # metav1.MicroTime (Lease renewTime)
    ("2027-01-15T09:00:00+01:00", T0),               # an offset: the same instant
    ("2027-01-15T08:00:00", T0),                     # no zone: UTC, as the API server means it
    ("yesterday", None), ("", None), (None, None), (1800000000, None),
])
def test_parse_time(text, want):
    assert parse_time(text) == want
