"""List-then-watch over raw JSON with the official client's transport.

The official client's Watch deserialises every event into model objects, which at
thousands of pods costs more than the decisions themselves; this reads the same
stream as plain dicts. It relists on 410 Gone and reconnects with capped backoff,
so an API server restart heals by itself.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable, Iterator

from kubernetes.client import ApiClient

from kubernetes.client.rest import ApiException

from scheduler.kube.client import loads, request

log = logging.getLogger(__name__)

ABSENT_RECHECK_S = 300.0
Handler = Callable[[str, dict[str, Any]], None]  # (ADDED|MODIFIED|DELETED, object)


class Gone(Exception):
    """The resourceVersion is too old: relist."""


def list_all(api: ApiClient, path: str, params: dict[str, Any], page: int = 500) -> tuple[list[dict], str]:
    """Every item of a list, paged; returns (items, resourceVersion)."""
    items: list[dict] = []
    cont = None
    while True:
        q = dict(params, limit=page)
        if cont:
            q["continue"] = cont
        resp = request(api, "GET", path, query=q, timeout=60)
        try:
            body = loads(resp.read())
        finally:
            resp.release_conn()
        items.extend(body.get("items") or [])
        meta = body.get("metadata") or {}
        cont = meta.get("continue")
        if not cont:
            return items, meta.get("resourceVersion", "")


def watch_events(api: ApiClient, path: str, params: dict[str, Any], rv: str, timeout_s: int = 300,
                 on_open: Callable[[Any], None] | None = None) -> Iterator[tuple[str, dict]]:
    """Events after resourceVersion `rv`; `on_open` gets the open response, so that another
    thread can cut the watch short (`response.shutdown()`)."""
    q = dict(params, watch="true", resourceVersion=rv, allowWatchBookmarks="true", timeoutSeconds=timeout_s)
    resp = request(api, "GET", path, query=q, timeout=(10, timeout_s + 30))
    if on_open:
        on_open(resp)
    buf = b""
    try:
        for chunk in resp.stream(65536, decode_content=True):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                ev = loads(line)
                typ, obj = ev.get("type"), ev.get("object") or {}
                if typ == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message", "resourceVersion too old"))
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                yield typ, obj
    finally:
        resp.release_conn()


class Informer:
    """Keeps a handler informed of every object at `path` (e.g. /api/v1/nodes)."""

    def __init__(self, api: ApiClient, path: str, handler: Handler, *,
                 params: dict[str, Any] | None = None, on_relist: Callable[[list[dict]], None] | None = None,
                 name: str = "", optional: bool = False):
        self.api, self.path, self.handler = api, path, handler
        # an API the server may not serve (resource.k8s.io/v1 before Kubernetes 1.34): a 404
        # is an empty list, synced, and asked again every ABSENT_RECHECK_S
        self.optional = optional
        self.absent = False
        self.params = params or {}
        self.on_relist = on_relist
        self.name = name or path
        self.synced = threading.Event()
        self.last_event = 0.0  # monotonic time of the last list or event
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"informer {self.name}", daemon=True)
        self._resp: Any = None
        self._resp_lock = threading.Lock()
        # relist(): lists asked for and lists applied, counted, so a caller waits for one begun after it asked
        self._relists = threading.Condition(self._resp_lock)
        self._relists_wanted = 0
        self._relists_done = 0

    def start(self) -> "Informer":
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 0.0) -> None:
        """Stop, cutting the open watch so the thread ends now rather than when the server
        closes the watch (minutes later); wait up to `timeout` for the thread."""
        self._stop.set()
        with self._resp_lock:
            resp = self._resp
            self._relists.notify_all()  # ends an absent API's wait
        if resp is not None:
            try:
                resp.shutdown()
            except Exception:  # already closed
                pass
        if timeout and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def relist(self, timeout: float = 60.0) -> bool:
        """List again from the API server (a quorum read), cutting the open watch, and wait
        until that list has been handed to on_relist: True, or False after `timeout`."""
        with self._relists:
            self._relists_wanted += 1
            want = self._relists_wanted
            resp = self._resp
            self._relists.notify_all()  # an informer waiting to ask an absent API again asks now
        if resp is not None:
            try:
                resp.shutdown()
            except Exception:  # already closed
                pass
        deadline = time.monotonic() + timeout
        with self._relists:
            while self._relists_done < want:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self._relists.wait(left)
        return True

    def _served_nothing(self, asked: int) -> None:
        if not self.absent:
            log.warning("%s: not served by this API server (404): counted as none; asked again every %.0fs",
                        self.name, ABSENT_RECHECK_S)
        self.absent = True
        if self.on_relist:
            self.on_relist([])
        self.last_event = time.monotonic()
        self.synced.set()
        with self._relists:
            self._relists_done = max(self._relists_done, asked)
            self._relists.notify_all()
            self._relists.wait_for(lambda: self._relists_wanted > self._relists_done or self._stop.is_set(),
                                   ABSENT_RECHECK_S)

    def _opened(self, resp: Any) -> None:
        with self._resp_lock:
            self._resp = resp
        if self._stop.is_set():
            resp.shutdown()

    def _run(self) -> None:
        backoff = 0.5
        rv = ""
        while not self._stop.is_set():
            try:
                with self._relists:
                    asked = self._relists_wanted
                if asked > self._relists_done:
                    rv = ""
                if not rv:
                    try:
                        items, rv = list_all(self.api, self.path, self.params)
                    except ApiException as exc:
                        if not (self.optional and exc.status == 404):
                            raise
                        self._served_nothing(asked)
                        continue
                    if self.on_relist:
                        self.on_relist(items)
                    self.last_event = time.monotonic()
                    self.synced.set()
                    with self._relists:
                        self._relists_done = max(self._relists_done, asked)
                        self._relists.notify_all()
                    log.info("%s: listed %d objects at resourceVersion %s", self.name, len(items), rv)
                for typ, obj in watch_events(self.api, self.path, self.params, rv, on_open=self._opened):
                    if self._stop.is_set():
                        return
                    if self._relists_wanted > self._relists_done:
                        break  # relist() asked: the events still buffered are older than the list to come
                    self.last_event = time.monotonic()
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if typ != "BOOKMARK":
                        self.handler(typ, obj)
                backoff = 0.5
            except Gone:
                log.info("%s: resourceVersion %s expired, relisting", self.name, rv)
                rv = ""
            except Exception as exc:  # API server down, connection reset, bad JSON: retry
                if self._stop.is_set():
                    return
                if self._relists_wanted > self._relists_done:
                    continue  # relist() cut the watch: list at once
                self.errors += 1
                log.warning("%s: watch failed (%s); retrying in %.1fs", self.name, exc, backoff)
                self._stop.wait(backoff * (1 + random.random() / 2))
                backoff = min(backoff * 2, 15.0)
