"""The extender v1 wire format, as kube-scheduler speaks it (Go field names, no json tags)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from scheduler.extender import protocol
from scheduler.extender.protocol import ProtocolError

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {}}


def body(**kw) -> bytes:
    return json.dumps(kw).encode()


def test_node_names_are_read_and_answered_as_names_only():
    args = protocol.parse_extender_args(body(Pod=POD, NodeNames=["a", "b"], Nodes=None))
    assert (args.node_names, args.sent_names, args.pod_key) == (["a", "b"], True, "ns/p")
    out = json.loads(protocol.filter_result(args, ["a"], {"b": "no room"}))
    assert out == {"Nodes": None, "NodeNames": ["a"], "FailedNodes": {"b": "no room"},
                   "FailedAndUnresolvableNodes": {}, "Error": ""}


def test_a_node_list_is_answered_with_a_node_list():
    args = protocol.parse_extender_args(body(Pod=POD, Nodes={"items": [{"metadata": {"name": "a"}}]}))
    out = json.loads(protocol.filter_result(args, ["a"], {}))
    assert out["NodeNames"] is None and out["Nodes"] == {"items": [{"metadata": {"name": "a"}}]}


def test_prioritize_and_bind_results():
    # b scores 0: kube-scheduler gives an unlisted host 0 from the extender, so it is left out
    assert json.loads(protocol.prioritize_result(["a", "b", "c"], [10, 0, 3])) == [
        {"Host": "a", "Score": 10}, {"Host": "c", "Score": 3}]
    assert protocol.prioritize_result(["a", "b"], [0, 0]) == b"[]"
    assert protocol.prioritize_result([], []) == b"[]"
    assert json.loads(protocol.binding_result("")) == {"Error": ""}
    b = protocol.parse_binding_args(body(PodName="p", PodNamespace="ns", PodUID="u1", Node="a"))
    assert (b.pod_key, b.node, b.pod_uid) == ("ns/p", "a", "u1")


@pytest.mark.parametrize("hosts", [
    ["node-1", "node-2"],
    ['we"ird', "back\\slash", "tab\there"],  # not valid node names, but never malformed JSON
    ["n\u00f6de", "\u30ce\u30fc\u30c9"],
])
def test_prioritize_result_encodes_any_host_name_as_json_would(hosts):
    scores = [i % 10 + 1 for i in range(len(hosts))]
    rows = np.arange(len(hosts))[::-1]
    by_row = tuple(reversed(hosts))
    for _ in range(2):  # the second call reads the encoded-name caches
        want = [{"Host": h, "Score": s} for h, s in zip(hosts, scores)]
        assert json.loads(protocol.prioritize_result(hosts, scores)) == want
        assert json.loads(protocol.prioritize_result(hosts, scores, rows, by_row)) == want


@pytest.mark.parametrize("rows, scores, want", [
    # hosts by row: r0 "n0", r1 "n1", r2 "n2"; the answer names rows, leaving out score 0
    ([2, 0, 1], [4, 0, 7], [("n2", 4), ("n1", 7)]),
    ([1, 1], [1, 2], [("n1", 1), ("n1", 2)]),
    # an unknown host (row -1) listed: every name comes from the hosts as sent instead
    ([2, -1], [5, 6], [("n2", 5), ("ghost", 6)]),
    ([-1, 2], [0, 6], [("n2", 6)]),  # left out, so the rows serve (below)
])
def test_prioritize_result_by_row(rows, scores, want):
    hosts = [("n0", "n1", "n2")[r] if r >= 0 else "ghost" for r in rows]
    out = json.loads(protocol.prioritize_result(hosts, scores, np.array(rows), ("n0", "n1", "n2")))
    assert [(h["Host"], h["Score"]) for h in out] == want


@pytest.mark.parametrize("hosts, scores, error", [
    (["a"], [-1], "0..10"),
    (["a"], [11], "0..10"),
    (["a", "b"], [1], "2 hosts but 1 scores"),
])
def test_prioritize_result_refuses_what_kube_scheduler_could_not_use(hosts, scores, error):
    with pytest.raises(ValueError, match=error):
        protocol.prioritize_result(hosts, scores)


@pytest.mark.parametrize("raw,msg", [
    (b"{not json", "not JSON"),
    (b"[]", "expected a JSON object"),
    (body(NodeNames=["a"]), "Pod must be an object"),
    (body(Pod={"metadata": {}}, NodeNames=["a"]), "Pod.metadata.name"),
    (body(Pod=POD), "neither NodeNames nor Nodes"),
    (body(Pod=POD, NodeNames="a"), "NodeNames must be a list"),
    (body(Pod=POD, NodeNames=[1, 2]), "NodeNames must be a list"),
    (body(Pod=POD, NodeNames=["x" * 300]), "NodeNames must be a list"),
    (body(Pod=POD, Nodes={"items": [{"metadata": {"name": 5}}]}), "Nodes.items[0].metadata.name"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b" " * (protocol.MAX_BODY + 1), "over the"),
])
def test_bad_extender_args(raw, msg):
    with pytest.raises(ProtocolError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        protocol.parse_extender_args(raw)


@pytest.mark.parametrize("raw,msg", [
    (body(PodName="p", PodNamespace="ns", PodUID="u"), "Node must be"),
    (body(PodName="", PodNamespace="ns", PodUID="u", Node="a"), "PodName must be"),
    (body(PodName="p", PodNamespace=["ns"], PodUID="u", Node="a"), "PodNamespace must be"),
    (b"null", "expected a JSON object"),
])
def test_bad_binding_args(raw, msg):
    with pytest.raises(ProtocolError, match=msg):
        protocol.parse_binding_args(raw)


def test_prioritize_result_names_hosts_by_row_when_every_listed_host_has_one():
    # the rows path reads names from row_names; the hosts as sent are only its fallback
    by_row = ("n0", "n1", "n2")
    assert json.loads(protocol.prioritize_result(["x", "y"], [0, 6], np.array([-1, 2]), by_row)) == [
        {"Host": "n2", "Score": 6}]
    assert json.loads(protocol.prioritize_result(["x", "y"], [1, 6], np.array([-1, 2]), by_row)) == [
        {"Host": "x", "Score": 1}, {"Host": "y", "Score": 6}]
    # names of very different lengths would pad every entry to the longest: hosts as sent instead
    uneven = ("n0", "n1", "n" * 200)
    assert json.loads(protocol.prioritize_result(["x", "y"], [2, 6], np.array([0, 2]), uneven)) == [
        {"Host": "x", "Score": 2}, {"Host": "y", "Score": 6}]
