"""kube-scheduler extender v1 on the wire (k8s.io/kube-scheduler/extender/v1).

The Go types carry no json tags, so fields travel with their Go names: `Pod`,
`Nodes`, `NodeNames`, `FailedNodes`, `FailedAndUnresolvableNodes`, `Error`,
`Host`, `Score`, `PodName`, `PodNamespace`, `PodUID`, `Node`. Every check here
turns bad input into a `ProtocolError` (HTTP 400), never an exception escaping.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import compress, repeat
from typing import Any, Sequence

import numpy as np
import orjson

from scheduler.core.name_table import NameTable
from scheduler.core.objects import pod_key
from scheduler.core.scoring import MAX_EXTENDER_PRIORITY
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
    pod: dict[str, Any]
    names: list[str] | None  # None when read as `rows`: `names_json` then holds them
    sent_names: bool  # True with nodeCacheCapable (NodeNames), False when a NodeList was sent
    rows: np.ndarray | None = None  # each name's row in the table it was read with, all found
    names_json: bytes = b""  # the NodeNames array's items as sent, without the brackets

    @cached_property
    def node_names(self) -> list[str]:
        """The names as str; read as rows, they are decoded only when a path needs them."""
        return self.names if self.names is not None else orjson.loads(b"[" + self.names_json + b"]")

    @property
    def pod_key(self) -> str:
        return pod_key(self.pod)


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


def _read_as_rows(body: bytes, table: NameTable) -> ExtenderArgs | None:
    """The request read without a str per node name, when it is what kube-scheduler sends
    (compact JSON ending in a NodeNames array of plain names, every one in `table`); None
    otherwise, and the caller decodes it all. Equal to the full decoding whenever it answers:
    the rest is decoded with an empty array in the names' place, and each name's raw bytes
    match a stored name that holds no byte JSON would escape."""
    if len(body) > MAX_BODY or not body.endswith(b"]}"):
        return None
    at = body.rfind(_NAMES_KEY)
    if at < 1 or body[at - 1] not in b",{":
        return None  # (a quote after a backslash would be the escaped one in a key like "\"NodeNames")
    items = body[at + len(_NAMES_KEY):-2]
    rows = table.recall(items)
    if rows is None:
        rows = _find_items(items, table)
        if rows is None:
            return None
    try:
        raw = orjson.loads(body[:at] + _NAMES_KEY + b"]}")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(raw, dict) or raw.get("NodeNames") != []:
        return None
    return ExtenderArgs(_pod(raw), None, True, rows, items)


# Below this many bytes of names (~400 short ones) a dict lookup per name beats the fixed
# cost of NameTable.find's two dozen numpy calls (~0.08 ms).
_FEW_NAMES_BYTES = 8192


def _find_items(items: bytes, table: NameTable) -> np.ndarray | None:
    """Rows of the names in `"a","b"` (a JSON array's items), if every one is in `table`."""
    if len(items) < _FEW_NAMES_BYTES:
        if len(items) < 2 or items[0] != 34 or items[-1] != 34:
            return None
        # exact: a name found holds no quote, so every `","` is between two names
        names = items[1:-1].split(b'","')
        rows = np.fromiter(map(table.by_bytes.get, names, repeat(-1)), np.int64, len(names))
        return None if (rows < 0).any() else rows
    buf = np.frombuffer(items + bytes(table.width), np.uint8)
    quotes = np.flatnonzero(buf[:len(items)] == 34)
    n = len(quotes) // 2
    if (n == 0 or len(quotes) != 2 * n or quotes[0] != 0 or quotes[-1] != len(items) - 1
            or (quotes[2::2] != quotes[1:-1:2] + 2).any() or (buf[quotes[1:-1:2] + 1] != 44).any()):
        return None  # every quote opens or closes a name, and one comma lies between names
    starts = quotes[0::2] + 1
    rows = table.find(buf, starts, quotes[1::2] - starts)
    return None if (rows < 0).any() else rows


def _pod(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ProtocolError("expected a JSON object with Pod and NodeNames (or Nodes)")
    pod = raw.get("Pod")
    if not isinstance(pod, dict) or not isinstance(pod.get("metadata"), dict):
        raise ProtocolError("Pod must be an object with metadata")
    _str(pod["metadata"].get("name"), "Pod.metadata.name")
    return pod


def parse_extender_args(body: bytes, table: NameTable | None = None, limit: int | None = None) -> ExtenderArgs:
    """The request's pod and node names. With the `table` of the snapshot it will be judged
    against, a request in kube-scheduler's own shape comes back with `rows` and its names
    still undecoded (a third of a 5,000-node filter's time went to decoding and finding them).
    With `limit`, more names than that are refused (TooLarge), before decoding when the
    key is spelled plainly, after it otherwise (the body cap bounds that case)."""
    if len(body) > MAX_BODY:
        raise TooLarge(f"request body of {len(body)} bytes is over the {MAX_BODY}-byte limit")
    if limit is not None:
        _count_names(body, limit)
    if table is not None:
        fast = _read_as_rows(body, table)
        if fast is not None:
            return fast
    raw = _loads(body)
    pod = _pod(raw)
    names = raw.get("NodeNames")
    if names is not None:
        if not isinstance(names, list) or (names and not _names_ok(names)):
            raise ProtocolError("NodeNames must be a list of node names")
        if limit is not None and len(names) > limit:
            raise TooLarge(f"more than {limit} node names (twice the cluster's nodes)")
        return ExtenderArgs(pod, names, True)
    nodes = raw.get("Nodes")
    if isinstance(nodes, dict) and isinstance(nodes.get("items"), list):
        if limit is not None and len(nodes["items"]) > limit:
            raise TooLarge(f"more than {limit} nodes (twice the cluster's nodes)")
        out = []
        for i, n in enumerate(nodes["items"]):
            meta = n.get("metadata") if isinstance(n, dict) else None
            out.append(_str(meta.get("name") if isinstance(meta, dict) else None, f"Nodes.items[{i}].metadata.name"))
        return ExtenderArgs(pod, out, False)
    raise ProtocolError("neither NodeNames nor Nodes.items was sent")


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


def filter_result(args: ExtenderArgs, feasible: list[str], failed: dict[str, str],
                  unresolvable: dict[str, str] | None = None, error: str = "") -> bytes:
    """With nodeCacheCapable the answer must carry NodeNames (only names it was sent);
    an answer with neither NodeNames nor Nodes removes every node."""
    body: dict[str, Any] = {
        "Nodes": None,
        "NodeNames": feasible,
        "FailedNodes": failed,
        "FailedAndUnresolvableNodes": unresolvable or {},
        "Error": error,
    }
    if not args.sent_names:
        # Only names go back; kube-scheduler maps them onto its own Node objects.
        body["Nodes"] = {"items": [{"metadata": {"name": n}} for n in feasible]}
        body["NodeNames"] = None
    return orjson.dumps(body)


def filter_result_rows(args: ExtenderArgs, ok: np.ndarray, reasons: list[str], table: NameTable,
                       row_names: Sequence[str]) -> bytes:
    """`filter_result` for a request read as rows with `table`: `ok` and the failed ones'
    `reasons` in request order, `row_names` the table's names. When every node fits, they go
    back as sent. The table remembers the answer's list: kube-scheduler sends it to prioritize."""
    if args.rows is None:
        raise ValueError("filter_result_rows needs a request read as rows")
    if ok.all():
        items, rows, failed = args.names_json, args.rows, b"{}"
    else:
        name = row_names.__getitem__
        rows = args.rows[ok]
        items = orjson.dumps(list(map(name, rows.tolist())))[1:-1]
        failed = orjson.dumps(dict(zip(map(name, args.rows[~ok].tolist()), reasons)))
    if len(rows):
        table.remember(items, rows)
    return b'{"Nodes":null,"NodeNames":[%s],"FailedNodes":%s,"FailedAndUnresolvableNodes":{},"Error":""}' % (
        items, failed)


_SCORE_SUFFIX = np.empty(MAX_EXTENDER_PRIORITY + 1, dtype=object)
_SCORE_SUFFIX[:] = [b"%d}" % i for i in range(MAX_EXTENDER_PRIORITY + 1)]
_SCORE_FIXED = np.frombuffer(b"".join(b"%2d}" % i for i in range(MAX_EXTENDER_PRIORITY + 1)), "V3")


def _host_fragment(host: str) -> bytes:
    return b',{"Host":' + orjson.dumps(host) + b',"Score":'


class HostFragments:
    """Prioritize's answer, pre-encoded. Each host's `,{"Host":"<name>","Score":` fragment is
    encoded once per node name, and the closing `<score>}` once per score: joining them costs
    a third of building 5,000 dicts for orjson. The fragments of one node list (a snapshot's
    names) are also kept by row, as rows of one byte matrix padded with spaces after
    `"Score":` (JSON whitespace): an answer is then two numpy gathers and a copy, where
    joining 5,000 bytes objects reads each object's scattered memory."""

    PREFIX_LIMIT = 100_000  # names seen over the process's life; a churning fleet must not grow it forever

    def __init__(self) -> None:
        self._prefix: dict[str, bytes] = {}
        # (the node list, its matrix or None where names differ in length too much for the
        # padding to pay), one tuple swapped at once: readers on other threads see a pair
        self._by_row: tuple[tuple[str, ...], np.ndarray | None] = ((), None)

    def prefixes(self, hosts: Sequence[str]) -> list[bytes]:
        try:
            return list(map(self._prefix.__getitem__, hosts))
        except KeyError:
            if len(self._prefix) > self.PREFIX_LIMIT:
                self._prefix.clear()
            for h in hosts:
                if h not in self._prefix:
                    self._prefix[h] = _host_fragment(h)
            return list(map(self._prefix.__getitem__, hosts))

    def by_row(self, row_names: tuple[str, ...]) -> np.ndarray | None:
        names, table = self._by_row
        if names is not row_names:
            frags = [_host_fragment(h) for h in row_names]
            widths = np.fromiter(map(len, frags), np.int64, len(frags))
            table = None
            if len(frags) and widths.max() <= 2 * np.median(widths):
                # one fixed-size item per row: numpy gathers those with a copy each, not byte by byte
                width = int(widths.max())
                table = np.frombuffer(b"".join(f.ljust(width) for f in frags), f"V{width}")
            self._by_row = (row_names, table)
        return table


_FRAGMENTS = HostFragments()  # one per process: the extender serves one node list at a time


def prioritize_result(hosts: Sequence[str], scores: np.ndarray | Sequence[int],
                      rows: np.ndarray | None = None, row_names: tuple[str, ...] | None = None) -> bytes:
    """A bare array of {"Host", "Score"}, scores 0..MAX_EXTENDER_PRIORITY.

    Hosts that score 0 are left out: kube-scheduler adds an extender's score only to the
    hosts it lists (prioritizeNodes in schedule_one.go), so an absent host scores 0, and the
    list to encode, send and decode is shorter. With `rows` (each host's index in
    `row_names`, -1 for one not there) the names of the hosts listed are gathered by row, and
    `hosts` may be empty when every row is there."""
    scores = np.asarray(scores, dtype=np.int64)
    if rows is None or row_names is None or len(rows) != len(scores):
        rows = row_names = None  # by host name only
    by_row = rows is not None
    if len(hosts) != len(scores) and not (by_row and not len(hosts)):
        raise ValueError(f"{len(hosts)} hosts but {len(scores)} scores")
    if not len(scores):
        return b"[]"
    if scores.min() < 0 or scores.max() > MAX_EXTENDER_PRIORITY:
        raise ValueError(f"extender scores must lie in 0..{MAX_EXTENDER_PRIORITY}")
    keep = scores > 0
    if not keep.any():
        return b"[]"
    picked = rows[keep] if rows is not None else None
    if not len(hosts) and (picked is None or picked.min() < 0):
        raise ValueError("no host names, and some rows are not in row_names")
    table = _FRAGMENTS.by_row(row_names) if picked is not None and row_names is not None and picked.min() >= 0 \
        else None
    if table is not None and picked is not None:
        out = np.empty(len(picked), [("host", table.dtype), ("score", _SCORE_FIXED.dtype)])
        out["host"] = table[picked]
        out["score"] = _SCORE_FIXED[scores[keep]]
        return b"".join((b"[", out.view(np.uint8).data[1:], b"]"))  # less the first leading comma
    parts = np.empty(2 * int(keep.sum()), dtype=object)
    if len(hosts):
        listed = list(compress(hosts, keep))
    else:
        assert picked is not None and row_names is not None  # checked above: no hosts means rows
        listed = list(map(row_names.__getitem__, picked.tolist()))
    parts[::2] = _FRAGMENTS.prefixes(listed)
    parts[1::2] = _SCORE_SUFFIX[scores[keep]]
    return b"[" + b"".join(parts.tolist())[1:] + b"]"


def binding_result(error: str = "") -> bytes:
    return orjson.dumps({"Error": error})
