"""Which sidecar extender may act: the rule (table) and the catch-up LIST it waits for."""
from __future__ import annotations

import threading
import time

import pytest

from scheduler.extender.config import ConfigError, load
from scheduler.extender.leadership import Leadership, LeaseView, Term, decide, lease_view

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a renewTime
OURS = Term("sched-a-7f9c_1b2e", "2027-01-15T08:00:00.000000Z")
THEIRS = Term("sched-b-44d1_9a0c", "2027-01-15T08:00:00.000000Z")
OURS_AGAIN = Term("sched-a-7f9c_1b2e", "2027-01-15T08:05:00.000000Z")  # re-acquired: a new term


@pytest.mark.parametrize("lease, caught_up, now, want, why", [
    (None, None, T0, False, "no readable Lease"),
    (LeaseView(THEIRS, T0), THEIRS, T0, False, "sched-b-44d1_9a0c leads"),
    # a holder whose name merely starts like ours is another pod: the identity ends at "_"
    (LeaseView(Term("sched-a-7f9c2_x", "t"), T0), None, T0, False, "leads, not this pod's"),
    (LeaseView(OURS, T0), None, T0, False, "catching up"),
    (LeaseView(OURS_AGAIN, T0), OURS, T0, False, "catching up"),  # the LIST was for the earlier term
    (LeaseView(OURS, T0), OURS, T0 + 3, True, "leads"),
    (LeaseView(OURS, T0), OURS, T0 + 10, True, "leads"),  # 10 s late = renewDeadline: still acting
    # 10.5 s > renewDeadline 10 s: kube-scheduler itself has stopped leading by now; a standby
    # may take the Lease at T0 + 15 (leaseDuration), so a bind sent now might land after its LIST
    (LeaseView(OURS, T0), OURS, T0 + 10.5, False, "last renewed 10.5s ago"),
])
def test_decide(lease, caught_up, now, want, why):
    ok, reason = decide(lease, "sched-a-7f9c", caught_up, now, renew_deadline_s=10)
    assert ok is want
    assert why in reason


@pytest.mark.parametrize("spec, want", [
    ({"holderIdentity": "a_1", "acquireTime": "2027-01-15T08:00:00.000000Z",
      "renewTime": "2027-01-15T08:00:02.500000Z"}, LeaseView(Term("a_1", "2027-01-15T08:00:00.000000Z"), T0 + 2.5)),
    ({"holderIdentity": "a_1", "acquireTime": "x", "renewTime": "2027-01-15T08:00:02Z"},
     LeaseView(Term("a_1", "x"), T0 + 2.0)),
    ({"holderIdentity": "", "acquireTime": "x", "renewTime": "2027-01-15T08:00:02Z"}, None),  # released
    ({"holderIdentity": "a_1", "renewTime": "2027-01-15T08:00:02Z"}, None),  # no acquireTime
    ({"holderIdentity": "a_1", "acquireTime": "x", "renewTime": "yesterday"}, None),
    ({"holderIdentity": ["a_1"], "acquireTime": "x", "renewTime": "2027-01-15T08:00:02Z"}, None),
])
def test_lease_view_reads_only_a_whole_lease(spec, want):
    assert lease_view({"spec": spec}) == want


def _lease(term: Term, renewed: float) -> dict:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(renewed)) + f".{int(renewed % 1 * 1e6):06d}Z"
    return {"spec": {"holderIdentity": term.holder, "acquireTime": term.acquired, "renewTime": stamp}}


def _wait(fn, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.01)
    return False


def test_a_new_term_acts_only_after_a_list_begun_after_it():
    now = [T0]
    lists: list[float] = []
    release = threading.Event()

    def relist() -> bool:
        lists.append(now[0])
        return release.wait(5)

    lead = Leadership("sched-a-7f9c", 10, relist, clock=lambda: now[0])
    lead.on_lease("ADDED", _lease(THEIRS, T0))
    time.sleep(0.05)
    assert lists == [] and not lead.may_act()[0]  # a standby lists nothing extra
    lead.on_lease("MODIFIED", _lease(OURS, T0 + 1))
    assert _wait(lambda: lists == [T0])
    assert "catching up" in lead.may_act()[1]  # the LIST has not been applied yet
    release.set()
    assert _wait(lambda: lead.may_act()[0])
    lead.on_lease("MODIFIED", _lease(OURS, T0 + 3))  # a renewal is not a new term: no second LIST
    time.sleep(0.05)
    assert lists == [T0] and lead.terms_caught_up == 1
    now[0] = T0 + 14  # renewed at T0 + 3, 11 s ago: past renewDeadline
    assert "last renewed 11.0s ago" in lead.may_act()[1]


def test_a_failed_list_is_tried_again_and_a_term_that_ended_stops_it():
    calls = []

    def relist() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("API server away")
        return True

    lead = Leadership("sched-a-7f9c", 10, relist, clock=lambda: T0)
    lead.on_lease("ADDED", _lease(OURS, T0))
    assert _wait(lambda: lead.may_act()[0], 5)
    assert len(calls) == 3

    stuck = Leadership("sched-a-7f9c", 10, lambda: False, clock=lambda: T0)
    stuck.on_lease("ADDED", _lease(OURS, T0))
    stuck.on_lease("MODIFIED", _lease(THEIRS, T0))  # lost before the LIST came through
    time.sleep(0.7)
    assert "sched-b-44d1_9a0c leads" in stuck.may_act()[1]


@pytest.mark.parametrize("section, error", [
    ({"resourceNamespace": "gpusched-system", "resourceName": "gpusched-scheduler"}, None),
    ({"resourceNamespace": "gpusched-system", "resourceName": "gpusched-scheduler", "renewDeadlineSeconds": 3,
      "identity": "pair-a"}, None),
    ({"resourceNamespace": "gpusched-system"}, "resourceName must name"),
    ({"resourceNamespace": "Bad_NS", "resourceName": "x"}, "resourceNamespace must name"),
    ({"resourceNamespace": "a", "resourceName": "b", "renewDeadlineSeconds": 0}, "renewDeadlineSeconds"),
    ({"resourceNamespace": "a", "resourceName": "b", "renewDeadlineSeconds": True}, "renewDeadlineSeconds"),
    ({"resourceNamespace": "a", "resourceName": "b", "leaseDuration": 15}, "accepts only"),
])
def test_leader_election_config(tmp_path, section, error):
    import yaml
    path = tmp_path / "extender.yaml"
    path.write_text(yaml.safe_dump({"leaderElection": section}))
    if error:
        with pytest.raises(ConfigError, match=error):
            load(str(path))
    else:
        le = load(str(path)).leader_election
        assert le is not None and le.name == section["resourceName"]
        assert le.renew_deadline_s == float(section.get("renewDeadlineSeconds", 10))
