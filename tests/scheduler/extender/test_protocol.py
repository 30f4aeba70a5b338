"""The extender v1 wire format, as kube-scheduler speaks it (Go field names, no json tags)."""
from __future__ import annotations

import json
import re

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.extender import node_rows, protocol
from scheduler.extender.node_rows import NodeRows
from scheduler.extender.protocol import ProtocolError

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {}}


def body(**kw) -> bytes:
    return json.dumps(kw).encode()


def parse(raw: bytes, names=("a", "b"), limit=None) -> protocol.ExtenderArgs:
    return protocol.parse_extender_args(raw, NodeRows(names), limit)


def test_node_names_are_read_and_answered_as_names_only():
    rows_of = NodeRows(("b", "a"))
    args = protocol.parse_extender_args(body(Pod=POD, NodeNames=["a", "b", "ghost"], Nodes=None), rows_of)
    assert (args.rows.tolist(), dict(args.unknown), args.sent_names, args.pod_key) == (
        [1, 0, -1], {2: "ghost"}, True, "ns/p")
    out = json.loads(protocol.filter_result(args, rows_of, np.array([True, False, False]), ["no room", "unknown"]))
    assert out == {"Nodes": None, "NodeNames": ["a"], "FailedNodes": {"b": "no room", "ghost": "unknown"},
                   "FailedAndUnresolvableNodes": {}, "Error": ""}
    out = json.loads(protocol.filter_result(args, rows_of, np.zeros(3, bool), [], unresolvable="bad pod"))
    assert out["NodeNames"] == [] and out["FailedNodes"] == {}
    assert out["FailedAndUnresolvableNodes"] == {"a": "bad pod", "b": "bad pod", "ghost": "bad pod"}


def test_a_node_list_is_answered_with_a_node_list():
    rows_of = NodeRows(("a",))
    args = protocol.parse_extender_args(body(Pod=POD, Nodes={"items": [{"metadata": {"name": "a"}}]}), rows_of)
    out = json.loads(protocol.filter_result(args, rows_of, np.array([True]), []))
    assert out["NodeNames"] is None and out["Nodes"] == {"items": [{"metadata": {"name": "a"}}]}


def test_prioritize_and_bind_results():
    # b scores 0: kube-scheduler gives an unlisted host 0 from the extender, so it is left out
    rows_of = NodeRows(("a", "b", "c"))
    assert json.loads(protocol.prioritize_result(rows_of, np.array([0, 1, 2]), [10, 0, 3])) == [
        {"Host": "a", "Score": 10}, {"Host": "c", "Score": 3}]
    assert protocol.prioritize_result(rows_of, np.array([0, 1]), [0, 0]) == b"[]"
    assert protocol.prioritize_result(rows_of, np.array([], np.int64), []) == b"[]"
    assert json.loads(protocol.binding_result("")) == {"Error": ""}
    b = protocol.parse_binding_args(body(PodName="p", PodNamespace="ns", PodUID="u1", Node="a"))
    assert (b.pod_key, b.node, b.pod_uid) == ("ns/p", "a", "u1")


@pytest.mark.parametrize("hosts", [
    ["node-1", "node-2"],
    ['we"ird', "back\\slash", "tab\there"],  # not valid node names, but never malformed JSON
    ["n\u00f6de", "\u30ce\u30fc\u30c9"],
    ["n0", "n" * 200],  # one long name: each row's fragment joined, not a padded matrix
])
def test_prioritize_result_encodes_any_host_name_as_json_would(hosts):
    scores = [i % 10 + 1 for i in range(len(hosts))]
    rows_of = NodeRows(tuple(reversed(hosts)))
    rows = np.arange(len(hosts))[::-1]
    want = [{"Host": h, "Score": s} for h, s in zip(hosts, scores)]
    assert json.loads(protocol.prioritize_result(rows_of, rows, scores)) == want


@pytest.mark.parametrize("rows, scores, want", [
    # hosts by row: r0 "n0", r1 "n1", r2 "n2"; the answer names rows, leaving out score 0
    ([2, 0, 1], [4, 0, 7], [("n2", 4), ("n1", 7)]),
    ([1, 1], [1, 2], [("n1", 1), ("n1", 2)]),
    ([-1, 2], [0, 6], [("n2", 6)]),  # a node not in the list scores 0 (score_rows): left out
])
def test_prioritize_result_by_row(rows, scores, want):
    for names in (("n0", "n1", "n2"), ("n0", "n1", "n" * 200)):  # a padded matrix, then joined fragments
        out = json.loads(protocol.prioritize_result(NodeRows(names), np.array(rows), scores))
        assert [(h["Host"], h["Score"]) for h in out] == [(names[int(n[1])], s) for n, s in want]


@pytest.mark.parametrize("rows, scores, error", [
    ([0], [-1], "0..10"),
    ([0], [11], "0..10"),
    ([0, 1], [1], "2 rows but 1 scores"),
    ([-1], [1], "lacks has a score"),
])
def test_prioritize_result_refuses_what_kube_scheduler_could_not_use(rows, scores, error):
    with pytest.raises(ValueError, match=error):
        protocol.prioritize_result(NodeRows(("a", "b")), np.array(rows), scores)


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
        parse(raw)


@pytest.mark.parametrize("raw,msg", [
    (body(PodName="p", PodNamespace="ns", PodUID="u"), "Node must be"),
    (body(PodName="", PodNamespace="ns", PodUID="u", Node="a"), "PodName must be"),
    (body(PodName="p", PodNamespace=["ns"], PodUID="u", Node="a"), "PodNamespace must be"),
    (b"null", "expected a JSON object"),
])
def test_bad_binding_args(raw, msg):
    with pytest.raises(ProtocolError, match=msg):
        protocol.parse_binding_args(raw)


# ---------- requests read as rows (what kube-scheduler sends, without a str per name)

TABLE_NAMES = ("node-0", "node-1", "node-10", "ip-10-0-0-1.internal")
POD_JSON = json.dumps(POD, separators=(",", ":")).encode()


@pytest.fixture(params=["dict", "numpy"])
def finder(request, monkeypatch):
    """Few names are looked up in a dict, many with numpy (node_rows.FEW_NAMES_BYTES): both ways."""
    if request.param == "numpy":
        monkeypatch.setattr(node_rows, "FEW_NAMES_BYTES", 0)
    return request.param


def go_body(items: bytes, before: bytes = b'"Nodes":null,') -> bytes:
    """As Go's encoding/json writes ExtenderArgs: compact, fields in struct order."""
    return b'{"Pod":%s,%s"NodeNames":[%s]}' % (POD_JSON, before, items)


def decoded(raw: bytes, rows_of: NodeRows) -> protocol.ExtenderArgs:
    """The request decoded in full, as any request not in kube-scheduler's shape is."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(protocol, "_read_as_rows", lambda body, rows_of: None)
        return protocol.parse_extender_args(raw, rows_of)


def same_args(got: protocol.ExtenderArgs, want: protocol.ExtenderArgs) -> bool:
    return (got.pod, got.rows.tolist(), dict(got.unknown), got.sent_names) == (
        want.pod, want.rows.tolist(), dict(want.unknown), want.sent_names)


@pytest.mark.parametrize("raw, rows", [
    (go_body(b'"node-1","node-0"'), [1, 0]),
    (go_body(b'"node-10","ip-10-0-0-1.internal","node-10"', before=b""), [2, 3, 2]),
    # anything else is decoded whole, with the same outcome
    (go_body(b'"node-1","ghost"'), None),  # a node the table does not hold
    (go_body(b'"node\\u002d1"'), None),  # escaped: only decoding says it is node-1
    (go_body(b'"node-1", "node-0"'), None),  # whitespace is JSON, but not what Go writes
    (go_body(b'"node-1","node-0"') + b" ", None),
    (go_body(b""), None),
    (go_body(b'"node-1",,"node-0"'), None),  # not JSON: the full decoding's error
    (go_body(b'"node-1":"node-0"'), None),
    (b'{"NodeNames":["node-1"],"Pod":%s}' % POD_JSON, None),  # names not last
    (b'{"Pod":%s,"NodeNames":["node-1"],"X":["node-0"]}' % POD_JSON, None),
    (b'{"Pod":{"metadata":{"name":"p","x":"\\"NodeNames\\":["}},"NodeNames":["node-1"]}', [1]),
    (b'{"Pod":5,"NodeNames":["node-1"]}', None),  # the pod's error, as the full decoding gives it
    # the last `"NodeNames":[` opens with the escaped quote of another key; the real one is empty
    (b'{"Pod":%s,"NodeNames":[],"\\"NodeNames":["node-1"]}' % POD_JSON, None),
    (b'{"Pod":{"metadata":{"name":"p"}}"NodeNames":["node-1"]}', None),  # not JSON before the names
])
def test_requests_in_go_s_shape_are_read_as_rows_and_any_other_as_before(raw, rows, finder):
    rows_of = NodeRows(TABLE_NAMES)
    try:
        want = decoded(raw, rows_of)
    except ProtocolError as exc:
        with pytest.raises(ProtocolError, match=re.escape(str(exc))):
            protocol.parse_extender_args(raw, rows_of)
        return
    got = protocol.parse_extender_args(raw, rows_of)
    assert same_args(got, want)
    assert bool(got.items) == (rows is not None)  # read from the bytes, or decoded
    if rows is not None:
        assert got.rows.tolist() == rows


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(TABLE_NAMES + ("ghost", "node-1 ", "NODE-1", "a,b", "n\u00f6de", 'q"uote')),
                max_size=6),
       st.sampled_from([(",", ":"), (", ", ": ")]), st.integers(0, 200), st.binary(max_size=3))
def test_reading_as_rows_changes_nothing_a_full_decoding_gives(names, separators, cut, junk):
    """Valid bodies, and bodies broken at any byte: the same args or the same error."""
    for few_names_bytes in (node_rows.FEW_NAMES_BYTES, 0):  # a dict, then numpy
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(node_rows, "FEW_NAMES_BYTES", few_names_bytes)
            _reads_alike(names, separators, cut, junk)


def _reads_alike(names, separators, cut, junk):
    text = json.dumps({"Pod": POD, "NodeNames": names}, separators=separators).encode()
    rows_of = NodeRows(TABLE_NAMES)
    for raw in (text, text[:cut] + junk + text[cut:], text[:cut] + text[cut + len(junk):]):
        try:
            want = decoded(raw, rows_of)
        except ProtocolError as exc:
            with pytest.raises(ProtocolError) as got_exc:
                protocol.parse_extender_args(raw, rows_of)
            assert str(got_exc.value) == str(exc)
            continue
        assert same_args(protocol.parse_extender_args(raw, rows_of), want)


@pytest.mark.parametrize("ok, reasons, names, failed", [
    # request rows [1, 0, 2]: node-1, node-0, node-10
    ([True, True, True], [], ["node-1", "node-0", "node-10"], {}),
    ([True, False, True], ["full"], ["node-1", "node-10"], {"node-0": "full"}),
    ([False, False, False], ["a", "b", "c"], [], {"node-1": "a", "node-0": "b", "node-10": "c"}),
])
def test_filter_result_is_the_same_for_a_request_read_as_rows_or_decoded(ok, reasons, names, failed, finder):
    raw = go_body(b'"node-1","node-0","node-10"')
    for read in (protocol.parse_extender_args, decoded):
        rows_of = NodeRows(TABLE_NAMES)
        out = json.loads(protocol.filter_result(read(raw, rows_of), rows_of, np.array(ok), reasons))
        assert out == {"Nodes": None, "NodeNames": names, "FailedNodes": failed,
                       "FailedAndUnresolvableNodes": {}, "Error": ""}
        # prioritize is sent the feasible list next: its bytes are remembered with their rows
        if names:
            sent = json.dumps(names, separators=(",", ":")).encode()[1:-1]
            assert [TABLE_NAMES[r] for r in rows_of.recall(sent)] == names


@pytest.mark.parametrize("what, names, limit, refused", [
    # limit = 2 x nodes + 16: 100 nodes -> 216 names at most
    ("as many names as the limit", 216, 216, False),
    ("one over", 217, 216, True),
    ("3.9 million one-character names, as the review sent", None, 216, True),
])
def test_names_over_the_cap_are_refused_before_decoding(what, names, limit, refused):
    if names is None:  # 2 MiB of "a", -- what fits under the body cap
        body = b'{"Pod":{"metadata":{"name":"p"}},"NodeNames":[' + b'"a",' * ((protocol.MAX_BODY - 60) // 4) + b'"a"]}'
    else:
        body = orjson.dumps({"Pod": {"metadata": {"name": "p"}}, "NodeNames": [f"n{i}" for i in range(names)]})
    assert protocol.max_names(100) == 216
    if refused:
        with pytest.raises(protocol.TooLarge):
            parse(body, limit=limit)
    else:
        assert len(parse(body, limit=limit).rows) == names


@pytest.mark.parametrize("body", [
    # the key spelled with an escape is not found by bytes: the count after decoding refuses it
    b'{"Pod":{"metadata":{"name":"p"}},"Node\\u004eames":[' + b'"a",' * 300 + b'"a"]}',
    b'{"Pod":{"metadata":{"name":"p"}},"Nodes":{"items":[' + b'{"metadata":{"name":"a"}},' * 300 + b'{}]}}',
])
def test_names_over_the_cap_in_other_spellings_are_refused_after_decoding(body):
    with pytest.raises(protocol.TooLarge):
        parse(body, limit=216)


@pytest.mark.parametrize("field, value", [
    ("PodNamespace", "kube-system/pods/y"), ("PodNamespace", "KUBE-SYSTEM"), ("PodNamespace", ".."),
    ("PodName", "a/b"), ("PodName", "a%2fb"), ("Node", "node/../x"), ("Node", "-node"), ("PodUID", "a\nb"),
])
def test_binding_names_must_be_dns_names(field, value):
    body = {"PodName": "p", "PodNamespace": "ns", "PodUID": "u", "Node": "n", field: value}
    with pytest.raises(protocol.ProtocolError, match=field):
        protocol.parse_binding_args(orjson.dumps(body))
