from __future__ import annotations

from benchmarks.extender import events


def test_every_event_is_timed_and_node_reports_leave_the_refresher_nothing_to_rebuild():
    spent = events.measure(40, 8)
    assert {k: len(v) for k, v in spent.items()} == {"node report": 8, "pod deleted": 8, "pod added": 8,
                                                    "refresher": 2}
    # a rebuild of even 40 nodes takes milliseconds; a tick with nothing to do, microseconds
    assert max(spent["refresher"]) < 0.001
