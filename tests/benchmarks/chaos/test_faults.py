"""The fault suite in CI: the cases of `gpusched bench chaos` at reduced size (300-pod burst,
30 s Prometheus outage, 4 s Lease, 3 s API server restart) on a test bed of their own:
they kill the extender and restart kube-apiserver, which the shared session cluster
must never see. The bench runs the same functions at full size.
"""
from __future__ import annotations

import pytest

from benchmarks.chaos import cases
from benchmarks.chaos.report import summary, table

pytestmark = pytest.mark.integration

BURST = 300
OUTAGE_S = 30.0
LEASE_S = 4.0
RESULTS: list[cases.CaseResult] = []


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    from benchmarks.chaos.bed import ChaosBed
    b = ChaosBed(tmp_path_factory.mktemp("chaos"), cases.burst_nodes(BURST))
    b.up()  # fails loudly if the test bed cannot start
    yield b
    b.down()
    if RESULTS:
        print("\n" + table(RESULTS))


def record(res: cases.CaseResult) -> cases.CaseResult:
    RESULTS.append(res)
    print(f"\n{res.name}: {'passed' if res.passed else 'FAILED'} in {res.seconds:.0f}s\n  checked: {res.checked}"
          f"\n  found: {res.found}\n  figures: {res.figures}")
    return res


def test_stale_node_report_keeps_new_pods_off_the_node_until_fresh(bed):
    r = record(cases.stale_node_report(bed, pods=16))
    f = r.figures
    assert f["placed_on_stale_node"] == 0 and f["pinned_bound_while_stale"] == 0, r.found
    assert f["stale_reason_events"] >= 1, r.found
    assert f["chosen_after_fresh"] >= 1, r.found
    assert r.passed, r.found


def test_extender_killed_during_a_burst_not_ignorable(bed):
    """With the extender not ignorable, pods wait while it is dead: all bound, none over-committed."""
    r = record(cases.extender_killed_during_burst(bed, pods=BURST, down_s=3.0, ignorable=False))
    f = r.figures
    assert f["pods_created"] == BURST and f["pods_scheduled"] == BURST and f["pods_lost"] == 0, r.found
    assert f["double_booked"] == 0 and f["nodes_overcommitted"] == 0, r.found
    assert f["bound_at_kill"] >= 1, "the extender was killed before it had bound anything: not mid-burst"
    assert f["bound_without_gpu_ids"] == 0, r.found
    # the restarted extender's own view of the same pods agrees (retried binds reserve nothing twice)
    assert f["extender_view_overcommitted"] == 0, r.found


def test_extender_killed_during_a_burst_as_deployed(bed):
    """deploy/'s configuration: ignorable: false (the extender's refusals were bound anyway by
    kube-scheduler's DefaultBinder), and the extender beside kube-scheduler in its pod, called
    on 127.0.0.1 with no Service between (so calls reach the restarted extender before it is
    ready, and it refuses them itself): no pod lost, none bound without GPU ids, nothing
    over-committed."""
    r = record(cases.extender_killed_during_burst(bed, pods=BURST, down_s=3.0, direct=True))
    f = r.figures
    assert f["ignorable"] is False, "deploy/'s kube-scheduler configuration must keep the extender not ignorable"
    assert f["pods_scheduled"] == BURST and f["pods_lost"] == 0, r.found
    assert f["double_booked"] == 0 and f["nodes_overcommitted"] == 0, r.found
    assert f["bound_without_gpu_ids"] == 0, r.found
    assert f["bound_at_kill"] >= 1


def test_prometheus_outage_holds_replicas_and_recovers(bed):
    r = record(cases.prometheus_outage(bed, outage_s=OUTAGE_S))
    f = r.figures
    assert f["replicas_held"] >= 2 and f["min_replicas_during"] == f["replicas_held"], r.found
    assert f["scale_downs_during"] == 0 and f["scale_actions_during"] == 0, r.found
    assert f["decisions_during"] >= OUTAGE_S / 3 and f["unknown_hold_decisions"] == f["decisions_during"], r.found
    assert f["recovery_s"] is not None, r.found
    assert r.passed, r.found


def test_autoscaler_leader_killed_standby_takes_over_without_duplicates(bed):
    r = record(cases.autoscaler_leader_killed(bed, lease_s=LEASE_S))
    f = r.figures
    assert f["takeover_s"] <= f["takeover_bound_s"], r.found
    assert f["both_leaders_samples"] == 0 and f["samples"] > 20, r.found
    assert f["standby_decisions_before"] == 0, r.found
    assert f["scale_actions_old_leader"] >= 1 and f["scale_actions_new_leader"] >= 1, r.found
    assert f["duplicate_scale_actions"] == 0, r.found
    assert r.passed, r.found


def test_apiserver_restart_extender_and_autoscaler_resync_by_themselves(bed):
    r = record(cases.apiserver_restart(bed, down_s=3.0))
    f = r.figures
    assert f["checks_passed"] == f["checks"] == 7, r.found
    assert f["autoscaler_watch_errors"] >= 1, "the autoscaler never noticed the restart: not a real outage"
    assert r.passed, r.found


def test_summary_figures():
    """Runs last: the suite's figures (cases run, faults survived, pods lost / double-booked)."""
    assert len(RESULTS) == 6, [r.name for r in RESULTS]
    s = summary(RESULTS)
    print(f"\nfault suite: {s}")
    assert s["pods_lost"] == 0 and s["double_booked"] == 0
    assert s["scale_downs_during"] == 0 and s["duplicate_scale_actions"] == 0 and s["placed_on_stale_node"] == 0
