"""Warning Events on Nodes whose gpusched report the extender refuses (unreadable, or
claiming more than the kubelet vouches for), so `kubectl describe node` says why the
node takes no new GPU pods.

Watch handlers only enqueue (never block, never wait on the API server); one thread
posts. The same node and message are posted at most once per `repeat_s`, and at most
`max_per_minute` Events in all, so a flapping or hostile agent cannot flood the API.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from scheduler import contract
from scheduler.nodeinfo import encode_time

log = logging.getLogger(__name__)

REASON = "GpuschedReportRejected"
COMPONENT = "gpusched-extender"


def event_body(node: str, message: str, at: datetime, seq: int, namespace: str = "default") -> dict[str, Any]:
    """A core/v1 Event about `node` (a Node's Events live in `default`; its UID is its name)."""
    message = message if len(message) <= 1024 else message[:1021] + "..."
    return {
        "metadata": {"name": f"{node}.gpusched.{int(at.timestamp() * 1e6):x}{seq:x}", "namespace": namespace},
        "involvedObject": {"kind": "Node", "name": node, "uid": node, "apiVersion": "v1"},
        "reason": REASON,
        "message": message,
        "type": "Warning",
        "source": {"component": COMPONENT},
        "reportingComponent": f"{contract.DOMAIN}/extender",
        "reportingInstance": COMPONENT,
        "firstTimestamp": encode_time(at),
        "lastTimestamp": encode_time(at),
        "count": 1,
    }


class NodeEvents:
    def __init__(self, post: Callable[[dict[str, Any]], Any], *, repeat_s: float = 3600.0,
                 max_per_minute: int = 30, clock: Callable[[], float] = time.monotonic):
        self.post = post
        self.repeat_s = repeat_s
        self.max_per_minute = max_per_minute
        self.clock = clock
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue(maxsize=256)
        self._sent: dict[tuple[str, str], float] = {}
        self._recent: list[float] = []
        self._seq = 0

    def report_error(self, node: str, message: str) -> None:
        """Called from watch handlers: never blocks; a full queue drops the Event (logged)."""
        try:
            self._queue.put_nowait((node, message))
        except queue.Full:
            log.info("node %s: report error Event dropped (queue full): %s", node, message)

    def due(self, node: str, message: str) -> bool:
        """Whether this Event may be posted now; records it as posted if so."""
        now = self.clock()
        last = self._sent.get((node, message))
        if last is not None and now - last < self.repeat_s:
            return False
        self._recent = [t for t in self._recent if now - t < 60.0]
        if len(self._recent) >= self.max_per_minute:
            return False
        self._sent[(node, message)] = now
        self._recent.append(now)
        if len(self._sent) > 2000:  # forget the oldest half
            for k, _ in sorted(self._sent.items(), key=lambda kv: kv[1])[:1000]:
                del self._sent[k]
        return True

    def drain(self, timeout: float | None = None) -> int:
        """Post what is queued (waiting up to `timeout` for the first); returns how many were posted."""
        posted = 0
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return 0
        while True:
            node, message = item
            if self.due(node, message):
                self._seq += 1
                try:
                    self.post(event_body(node, message, datetime.now(timezone.utc), self._seq))
                    posted += 1
                except Exception as exc:  # noqa: BLE001 - an Event is best effort
                    log.warning("recording Event %s on Node %s failed: %s", REASON, node, exc)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return posted

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.drain(timeout=0.5)
            except Exception:  # never let the poster die
                log.exception("node Event poster failed")
