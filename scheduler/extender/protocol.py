"""kube-scheduler extender v1 on the wire (k8s.io/kube-scheduler/extender/v1).

The Go types carry no json tags, so fields travel with their Go names: `Pod`,
`Nodes`, `NodeNames`, `FailedNodes`, `FailedAndUnresolvableNodes`, `Error`,
`Host`, `Score`, `PodName`, `PodNamespace`, `PodUID`, `Node`. Every check here
turns bad input into a `ProtocolError` (HTTP 400), never an exception escaping.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import orjson

from scheduler.core.objects import pod_key
from scheduler.core.scoring import MAX_EXTENDER_PRIORITY
from scheduler.extender.node_rows import NodeRows
from scheduler.names import is_label, is_subdomain

# 5,000 node names are ~100 KiB and a pod a few KiB; the cap bounds what one call can make
# the extender hold (a 15.6 MB body of one-character names once took it from 90 MB to 820 MB).
# A whole NodeList (nodeCacheCapable: false) fits only for small clusters.
MAX_BODY = 2 * 2**20


class ProtocolError(ValueError):
    """The request is not a valid extender call; the message says which field."""


class TooLarge(ProtocolError):
    """A body or a node list over its cap (HTTP 413)."""


def max_names(nodes: int) -> int:
    """The most node names a call may carry: kube-scheduler sends each node once, and its
    node list may run a little ahead of the snapshot's, so twice the snapshot and some."""
    return 2 * nodes + 16


def _count_names(body: bytes, limit: int) -> None:
    """Refuse a body with more than `limit` names before decoding it. Every item of the
    NodeNames array but the last is followed by a comma, so the commas after the key's first
    appearance are at least the names less one, whatever else lies there."""
    at = body.find(b'"NodeNames"')
    # numpy: 9 us for 5,000 names, where bytes.count took 70 (a tenth of the whole filter)
    if at >= 0 and np.count_nonzero(np.frombuffer(body, np.uint8, offset=at) == 44) >= limit:
        raise TooLarge(f"more than {limit} node names (twice the cluster's nodes)")


@dataclass(frozen=True)
class ExtenderArgs:
    """A filter or prioritize call: the pod, and its candidate nodes as rows of the
    NodeRows the call was read with."""
    pod: dict[str, Any]
    rows: np.ndarray  # [C] each candidate's row, -1 for a node the NodeRows lacks
    sent_names: bool  # True with nodeCacheCapable (NodeNames), False when a NodeList was sent
    unknown: Mapping[int, str] = field(default_factory=dict)  # candidate position -> name, where row is -1
    items: bytes = b""  # the NodeNames array's items as sent, when read from the bytes (b"" if decoded)

    @property
    def pod_key(self) -> str:
        return pod_key(self.pod)

    def names(self, node_rows: NodeRows, where: np.ndarray | None = None) -> list[str]:
        """The names of the candidates (those selected by `where`), as sent."""
        positions = np.arange(len(self.rows)) if where is None else np.flatnonzero(where)
        if not self.unknown:
            return list(map(node_rows.names.__getitem__, self.rows[positions].tolist()))
        return [self.unknown[i] if r < 0 else node_rows.names[r]
                for i, r in zip(positions.tolist(), self.rows[positions].tolist())]


@dataclass(frozen=True)
class BindingArgs:
    pod_name: str
    pod_namespace: str
    pod_uid: str
    node: str

    @property
    def pod_key(self) -> str:
        return f"{self.pod_namespace}/{self.pod_name}"


def _loads(body: bytes) -> Any:
    if len(body) > MAX_BODY:
        raise ProtocolError(f"request body of {len(body)} bytes is over the {MAX_BODY}-byte limit")
    try:
        # orjson: a 5,000-node request decodes in a quarter of json's time; it also
        # refuses nesting deeper than 1,024 instead of recursing
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc).lower():
            raise ProtocolError("request body is nested too deeply") from None
        raise ProtocolError(f"request body is not JSON: {exc}") from None


def _str(v: Any, what: str, limit: int = 253) -> str:
    if not isinstance(v, str) or not v or len(v) > limit:
        raise ProtocolError(f"{what} must be a non-empty string of at most {limit} characters")
    return v


def _names_ok(names: list) -> bool:
    """Every item a string of 1..253 characters. C-level passes, no generator: this runs on
    5,000 names per call (0.22 ms, against 0.43 ms for a set of types and two len passes)."""
    try:
        "".join(names)  # TypeError on anything but str
    except TypeError:
        return False
    return "" not in names and len(max(names, key=len)) <= 253


_NAMES_KEY = b'"NodeNames":['


def _read_as_rows(body: bytes, node_rows: NodeRows) -> ExtenderArgs | None:
    """The request read without a str per node name, when it is what kube-scheduler sends
    (compact JSON ending in a NodeNames array of plain names, every one in `node_rows`); None
    otherwise, and the caller decodes it all. Equal to the full decoding whenever it answers:
    the rest is decoded with an empty array in the names' place, and each name's raw bytes
    match a stored name that holds no byte JSON would escape."""
    if len(body) > MAX_BODY or not body.endswith(b"]}"):
        return None
    at = body.rfind(_NAMES_KEY)
    if at < 1 or body[at - 1] not in b",{":
        return None  # (a quote after a backslash would be the escaped one in a key like "\"NodeNames")
    items = body[at + len(_NAMES_KEY):-2]
    rows = node_rows.find(items)
    if rows is None:
        return None
    try:
        raw = orjson.loads(body[:at] + _NAMES_KEY + b"]}")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(raw, dict) or raw.get("NodeNames") != []:
        return None
    return ExtenderArgs(_pod(raw), rows, True, items=items)


def _pod(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ProtocolError("expected a JSON object with Pod and NodeNames (or Nodes)")
    pod = raw.get("Pod")
    if not isinstance(pod, dict) or not isinstance(pod.get("metadata"), dict):
        raise ProtocolError("Pod must be an object with metadata")
    _str(pod["metadata"].get("name"), "Pod.metadata.name")
    return pod


def parse_extender_args(body: bytes, node_rows: NodeRows, limit: int | None = None) -> ExtenderArgs:
    """The request's pod and its candidates' rows in `node_rows`. A request in
    kube-scheduler's own shape is read from its bytes, without decoding its names (a third
    of a 5,000-node filter's time once went to decoding and finding them); any other is
    decoded in full, to the same answer. With `limit`, more names than that are refused
    (TooLarge), before decoding when the key is spelled plainly, after it otherwise (the
    body cap bounds that case)."""
    if len(body) > MAX_BODY:
        raise TooLarge(f"request body of {len(body)} bytes is over the {MAX_BODY}-byte limit")
    if limit is not None:
        _count_names(body, limit)
    fast = _read_as_rows(body, node_rows)
    if fast is not None:
        return fast
    raw = _loads(body)
    pod = _pod(raw)
    names = raw.get("NodeNames")
    sent_names = names is not None
    if sent_names:
        if not isinstance(names, list) or (names and not _names_ok(names)):
            raise ProtocolError("NodeNames must be a list of node names")
        if limit is not None and len(names) > limit:
            raise TooLarge(f"more than {limit} node names (twice the cluster's nodes)")
    else:
        nodes = raw.get("Nodes")
        if not (isinstance(nodes, dict) and isinstance(nodes.get("items"), list)):
            raise ProtocolError("neither NodeNames nor Nodes.items was sent")
        if limit is not None and len(nodes["items"]) > limit:
            raise TooLarge(f"more than {limit} nodes (twice the cluster's nodes)")
        names = []
        for i, n in enumerate(nodes["items"]):
            meta = n.get("metadata") if isinstance(n, dict) else None
            names.append(_str(meta.get("name") if isinstance(meta, dict) else None, f"Nodes.items[{i}].metadata.name"))
    rows = node_rows.rows_of(names)
    unknown = {i: names[i] for i in np.flatnonzero(rows < 0).tolist()}
    return ExtenderArgs(pod, rows, sent_names, unknown)


def parse_binding_args(body: bytes) -> BindingArgs:
    """The binding's names, checked as the API server checks them: they go into its paths."""
    raw = _loads(body)
    if not isinstance(raw, dict):
        raise ProtocolError("expected a JSON object with PodName, PodNamespace, PodUID and Node")
    b = BindingArgs(
        pod_name=_str(raw.get("PodName"), "PodName"),
        pod_namespace=_str(raw.get("PodNamespace"), "PodNamespace", 63),
        pod_uid=_str(raw.get("PodUID"), "PodUID", 128),
        node=_str(raw.get("Node"), "Node"),
    )
    if not is_label(b.pod_namespace):
        raise ProtocolError("PodNamespace must be a DNS-1123 label (lower-case letters, digits and '-')")
    if not is_subdomain(b.pod_name):
        raise ProtocolError("PodName must be a DNS-1123 subdomain")
    if not is_subdomain(b.node):
        raise ProtocolError("Node must be a DNS-1123 subdomain")
    if not b.pod_uid.isprintable():
        raise ProtocolError("PodUID must be printable")
    return b


def filter_result(args: ExtenderArgs, node_rows: NodeRows, ok: np.ndarray, reasons: list[str],
                  unresolvable: str = "", hard: np.ndarray | None = None) -> bytes:
    """The answer to a filter read with `node_rows`: the candidates where `ok`, and each
    other one's reason (`reasons`, in candidate order), or `unresolvable` for every one.
    Failed candidates where `hard` go back as FailedAndUnresolvableNodes (kube-scheduler's
    preemption does not try them), the rest as FailedNodes.
    With nodeCacheCapable the answer must carry NodeNames (only names it was sent); an
    answer with neither NodeNames nor Nodes removes every node. When every node fits they
    go back as sent. The answer's list is remembered: kube-scheduler sends it to prioritize."""
    failed = unresolved = b"{}"
    if unresolvable:
        ok = np.zeros(len(args.rows), bool)
        unresolved = orjson.dumps(dict.fromkeys(args.names(node_rows), unresolvable))
    elif not ok.all():
        named = zip(args.names(node_rows, ~ok), reasons)
        if hard is None or not hard.any():
            failed = orjson.dumps(dict(named))
        else:
            split: tuple[dict[str, str], dict[str, str]] = ({}, {})
            for (name, why), h in zip(named, hard[~ok].tolist()):
                split[h][name] = why
            failed, unresolved = orjson.dumps(split[0]), orjson.dumps(split[1])
    if not args.sent_names:
        # Only names go back; kube-scheduler maps them onto its own Node objects.
        nodes = orjson.dumps({"items": [{"metadata": {"name": n}} for n in args.names(node_rows, ok)]})
        return _FILTER_RESULT % (nodes, b"null", failed, unresolved)
    rows = args.rows[ok]
    if args.items and len(rows) == len(args.rows):
        items = args.items
    elif args.unknown:
        items = orjson.dumps(args.names(node_rows, ok))[1:-1]
    else:
        items = node_rows.items_of(rows)
    if len(rows) and rows.min() >= 0:
        node_rows.remember(items, rows)
    return _FILTER_RESULT % (b"null", b"[%s]" % items, failed, unresolved)


_FILTER_RESULT = b'{"Nodes":%s,"NodeNames":%s,"FailedNodes":%s,"FailedAndUnresolvableNodes":%s,"Error":""}'
_SCORE_SUFFIX = np.empty(MAX_EXTENDER_PRIORITY + 1, dtype=object)
_SCORE_SUFFIX[:] = [b"%d}" % i for i in range(MAX_EXTENDER_PRIORITY + 1)]
_SCORE_SUFFIX.flags.writeable = False  # constants, as _SCORE_FIXED (a view of bytes) is
_SCORE_FIXED = np.frombuffer(b"".join(b"%2d}" % i for i in range(MAX_EXTENDER_PRIORITY + 1)), "V3")


def prioritize_result(node_rows: NodeRows, rows: np.ndarray, scores: np.ndarray) -> bytes:
    """A bare array of {"Host", "Score"}, scores 0..MAX_EXTENDER_PRIORITY, of the
    candidates at `rows` of `node_rows`.

    Hosts that score 0 are left out: kube-scheduler adds an extender's score only to the
    hosts it lists (prioritizeNodes in schedule_one.go), so an absent host scores 0, and the
    list to encode, send and decode is shorter. The hosts listed are named by row from the
    fragments NodeRows encoded once: an answer is two numpy gathers and a copy."""
    scores = np.asarray(scores, dtype=np.int64)
    if len(rows) != len(scores):
        raise ValueError(f"{len(rows)} rows but {len(scores)} scores")
    if not len(scores):
        return b"[]"
    if scores.min() < 0 or scores.max() > MAX_EXTENDER_PRIORITY:
        raise ValueError(f"extender scores must lie in 0..{MAX_EXTENDER_PRIORITY}")
    keep = scores > 0
    if not keep.any():
        return b"[]"
    picked = rows[keep]
    if picked.min() < 0:
        raise ValueError("a node the snapshot lacks has a score")
    matrix = node_rows.fragment_matrix
    if matrix is not None:
        out = np.empty(len(picked), [("host", matrix.dtype), ("score", _SCORE_FIXED.dtype)])
        out["host"] = matrix[picked]
        out["score"] = _SCORE_FIXED[scores[keep]]
        return b"".join((b"[", out.view(np.uint8).data[1:], b"]"))  # less the first leading comma
    parts = np.empty(2 * len(picked), dtype=object)
    parts[::2] = list(map(node_rows.fragments.__getitem__, picked.tolist()))
    parts[1::2] = _SCORE_SUFFIX[scores[keep]]
    return b"[" + b"".join(parts.tolist())[1:] + b"]"


def binding_result(error: str = "") -> bytes:
    return orjson.dumps({"Error": error})
