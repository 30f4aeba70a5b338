"""Copy a model from a model store into the node's cache directory, atomically.

Requested through the Node annotation `gpusched.io/prefetch` (desired state, read
every tick; whoever wants a model warm on a node, e.g. the autoscaler, writes it):

    gpusched.io/prefetch: '[{"model": "meta-llama/Llama-3.1-8B-Instruct"},
                            {"model": "org/name", "source": "https://models.internal/org/name"},
                            "Qwen/Qwen2.5-7B-Instruct"]'

- a JSON list (at most 32 entries, 16 KiB) of {"model": ID, "source": URL-or-path}
  objects; a bare string is {"model": ID}. IDs are "name" or "org/name" (see
  cache.validate_model_id); anything else is rejected with an Event.
- `source` is optional; without it the model comes from `<first --model-store>/<ID>`.
  With it, it must lie under one of the agent's `--model-store` values (a
  directory, or an http(s) URL prefix): a Node annotation cannot point the agent
  at arbitrary files or hosts. HTTP redirects are not followed.
- a store holds `<store>/<org>/<name>/` with the model's files and a
  `manifest.json`: {"files": [{"path": "model.safetensors", "size": 16060522624,
  "sha256": "<hex, optional>"}, ...]}. The manifest is required over HTTP; a
  local store without one is copied as listed (regular files; hidden names skipped).
- models already cached (either layout) are skipped; removing an entry deletes
  nothing. Progress: gpusched_prefetch_bytes{model} and Events PrefetchStarted,
  PrefetchProgress (25/50/75%), Prefetched, PrefetchFailed on the Node; the model
  shows up in gpusched.io/model-cache once complete.

Atomicity: files go into `<cache>/.gpusched-prefetch-<random>/` (hidden, so the
scanner never counts it), each is size- and (where given) sha256-checked and
fsynced, then the directory is renamed to `<cache>/<org>/<name>` and the parent
fsynced. A failure or interruption leaves at most a hidden temporary directory,
removed on the next start (`cleanup_temp`). Writes go through directory file
descriptors with O_NOFOLLOW: a symlink planted in the cache directory is never
followed for a write.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from scheduler.agent.cache import TEMP_PREFIX, BadModelId, _looks_like_model, validate_model_id

log = logging.getLogger(__name__)

MAX_REQUESTS = 32
MAX_ANNOTATION_BYTES = 16 * 1024
MAX_MANIFEST_BYTES = 16 * 2**20
MAX_FILES = 10_000
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")

Progress = Callable[[str, int, int], None]  # (model, bytes done, bytes total)


class PrefetchError(Exception):
    """A prefetch that failed; the message says why (it goes into an Event)."""


@dataclass(frozen=True)
class PrefetchRequest:
    model: str
    source: str | None = None


@dataclass(frozen=True)
class FileSpec:
    path: str  # relative, '/'-separated, validated
    size: int
    sha256: str | None = None


@dataclass(frozen=True)
class PrefetchResult:
    model: str
    source: str
    path: str
    bytes: int
    files: int
    seconds: float


def parse_requests(text: str | None) -> tuple[list[PrefetchRequest], list[str]]:
    """The valid requests in a `gpusched.io/prefetch` value, and a problem per bad entry."""
    if not text:
        return [], []
    if len(text.encode()) > MAX_ANNOTATION_BYTES:
        return [], [f"prefetch annotation is larger than {MAX_ANNOTATION_BYTES} bytes; ignored"]
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return [], [f"prefetch annotation is not JSON: {exc}"]
    if not isinstance(raw, list):
        return [], ["prefetch annotation must be a JSON list of {\"model\": ..., \"source\": ...}"]
    out: list[PrefetchRequest] = []
    problems: list[str] = []
    seen: set[str] = set()
    for pos, item in enumerate(raw[:MAX_REQUESTS]):
        if isinstance(item, str):
            item = {"model": item}
        if not isinstance(item, dict):
            problems.append(f"prefetch[{pos}]: expected an object or a model id")
            continue
        source = item.get("source")
        if source is not None and (not isinstance(source, str) or not source or len(source) > 2048):
            problems.append(f"prefetch[{pos}]: source must be a non-empty string")
            continue
        try:
            model = validate_model_id(item.get("model"))
        except BadModelId as exc:
            problems.append(f"prefetch[{pos}]: {exc}")
            continue
        if model in seen:
            continue
        seen.add(model)
        out.append(PrefetchRequest(model, source))
    if len(raw) > MAX_REQUESTS:
        problems.append(f"prefetch annotation lists {len(raw)} models; only the first {MAX_REQUESTS} are used")
    return out, problems


def _safe_relpath(path: object) -> str:
    if not isinstance(path, str) or not path or len(path) > 1024:
        raise PrefetchError(f"bad file path in manifest: {str(path)[:80]!r}")
    parts = path.split("/")
    if len(parts) > 8 or not all(_SAFE_SEGMENT.match(p) for p in parts):
        raise PrefetchError(f"unsafe file path in manifest: {path[:80]!r} (relative, no '..', no hidden names)")
    return path


def parse_manifest(raw: bytes) -> list[FileSpec]:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise PrefetchError(f"manifest.json is not JSON: {exc}") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list) or not files:
        raise PrefetchError("manifest.json must hold {\"files\": [{\"path\", \"size\", \"sha256\"?}, ...]}")
    if len(files) > MAX_FILES:
        raise PrefetchError(f"manifest.json lists more than {MAX_FILES} files")
    out: list[FileSpec] = []
    seen: set[str] = set()
    for f in files:
        if not isinstance(f, dict):
            raise PrefetchError("manifest.json: each file must be an object")
        path = _safe_relpath(f.get("path"))
        size = f.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= 2**50:
            raise PrefetchError(f"manifest.json: {path}: size must be a byte count")
        sha = f.get("sha256")
        if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha)):
            raise PrefetchError(f"manifest.json: {path}: sha256 must be 64 hex digits")
        if path in seen:
            raise PrefetchError(f"manifest.json: {path} listed twice")
        seen.add(path)
        out.append(FileSpec(path, size, sha.lower() if sha else None))
    return out


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def _normalise_store(store: str) -> str:
    if _is_url(store):
        u = urllib.parse.urlsplit(store)
        if u.username or u.password or u.query or u.fragment:
            raise ValueError(f"model store {store!r}: no credentials, query or fragment in the URL")
        return store.rstrip("/")
    if store.startswith("file://"):
        store = urllib.parse.unquote(urllib.parse.urlsplit(store).path)
    if not os.path.isabs(store):
        raise ValueError(f"model store {store!r}: use an absolute directory or an http(s) URL")
    return os.path.realpath(store)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} not followed", headers, fp)


class Prefetcher:
    def __init__(self, cache_dir: str, stores: Sequence[str], *, timeout_s: float = 30.0,
                 chunk_bytes: int = 4 * 2**20, free_margin_bytes: int = 256 * 2**20):
        self.cache_dir = os.path.realpath(cache_dir)
        self.stores = [_normalise_store(s) for s in stores]
        self.timeout_s = timeout_s
        self.chunk = chunk_bytes
        self.free_margin = free_margin_bytes
        self._opener = urllib.request.build_opener(_NoRedirect)

    # --- where from ---------------------------------------------------------------

    def source_for(self, req: PrefetchRequest) -> str:
        validate_model_id(req.model)
        if req.source is None:
            if not self.stores:
                raise PrefetchError("no source given and the agent has no --model-store")
            store = self.stores[0]
            return f"{store}/{req.model}" if _is_url(store) else os.path.join(store, *req.model.split("/"))
        src = req.source
        if _is_url(src):
            u = urllib.parse.urlsplit(src)
            if u.username or u.password or u.query or u.fragment or any(
                    p in (".", "..") for p in urllib.parse.unquote(u.path).split("/")):
                raise PrefetchError(f"source {src[:200]!r}: no credentials, query, fragment or '..'")
            norm = src.rstrip("/")
            if not any(_is_url(s) and (norm == s or norm.startswith(s + "/")) for s in self.stores):
                raise PrefetchError(f"source {src[:200]!r} is not under an allowed --model-store")
            return norm
        if src.startswith("file://"):
            src = urllib.parse.unquote(urllib.parse.urlsplit(src).path)
        if not os.path.isabs(src):
            raise PrefetchError(f"source {src[:200]!r}: use an absolute path or an http(s) URL")
        real = os.path.realpath(src)
        if not any(not _is_url(s) and _inside(real, s) for s in self.stores):
            raise PrefetchError(f"source {src[:200]!r} is not under an allowed --model-store")
        return real

    def _get(self, url: str, limit: int | None = None) -> Any:
        try:
            return self._opener.open(urllib.request.Request(url, headers={"User-Agent": "gpusched-agent"}),
                                     timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            raise PrefetchError(f"GET {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise PrefetchError(f"GET {url}: {getattr(exc, 'reason', exc)}") from None

    def plan(self, source: str) -> list[FileSpec]:
        if _is_url(source):
            with self._get(source + "/manifest.json") as resp:
                raw = resp.read(MAX_MANIFEST_BYTES + 1)
            if len(raw) > MAX_MANIFEST_BYTES:
                raise PrefetchError("manifest.json is too large")
            return parse_manifest(raw)
        if not os.path.isdir(source):
            raise PrefetchError(f"source {source} is not a directory")
        manifest = os.path.join(source, "manifest.json")
        if os.path.isfile(manifest):
            with open(manifest, "rb") as f:
                return parse_manifest(f.read(MAX_MANIFEST_BYTES + 1))
        files: list[FileSpec] = []
        for dirpath, dirs, names in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for n in sorted(names):
                if n.startswith("."):
                    continue
                full = os.path.join(dirpath, n)
                rel = os.path.relpath(full, source).replace(os.sep, "/")
                st = os.stat(full)
                if stat.S_ISREG(st.st_mode):
                    files.append(FileSpec(_safe_relpath(rel), st.st_size))
                if len(files) > MAX_FILES:
                    raise PrefetchError(f"source has more than {MAX_FILES} files")
        if not files:
            raise PrefetchError(f"source {source} holds no files")
        return files

    def _open_source(self, source: str, spec: FileSpec) -> Any:
        if _is_url(source):
            url = source + "/" + urllib.parse.quote(spec.path)
            resp = self._get(url)
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) != spec.size:
                resp.close()
                raise PrefetchError(f"{spec.path}: server says {length} bytes, manifest says {spec.size}")
            return resp
        full = os.path.realpath(os.path.join(source, *spec.path.split("/")))
        if not _inside(full, source) and not any(not _is_url(s) and _inside(full, s) for s in self.stores):
            raise PrefetchError(f"{spec.path} resolves outside the model store")
        try:
            return open(full, "rb")
        except OSError as exc:
            raise PrefetchError(f"{spec.path}: {exc.strerror or exc}") from None

    # --- the copy -----------------------------------------------------------------

    def fetch(self, req: PrefetchRequest, progress: Progress | None = None,
              cancel: threading.Event | None = None) -> PrefetchResult:
        started = time.monotonic()
        model = validate_model_id(req.model)
        source = self.source_for(req)
        try:
            files = self.plan(source)
        except OSError as exc:
            raise PrefetchError(f"reading {source}: {exc.strerror or exc}") from None
        total = sum(f.size for f in files)
        try:
            vfs = os.statvfs(self.cache_dir)
            if vfs.f_bavail * vfs.f_frsize < total + self.free_margin:
                raise PrefetchError(f"not enough space in {self.cache_dir}: need {total} bytes, "
                                    f"{vfs.f_bavail * vfs.f_frsize} free")
        except OSError as exc:
            raise PrefetchError(f"cache directory {self.cache_dir}: {exc.strerror or exc}") from None
        tmp = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self.cache_dir)
        done = 0
        last_report = 0.0
        try:
            for spec in files:
                target = os.path.join(tmp, *spec.path.split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
                digest = hashlib.sha256() if spec.sha256 else None
                written = 0
                try:
                    with self._open_source(source, spec) as src:
                        while True:
                            if cancel is not None and cancel.is_set():
                                raise PrefetchError("cancelled")
                            try:
                                chunk = src.read(self.chunk)
                            except (OSError, ValueError) as exc:
                                raise PrefetchError(f"{spec.path}: read failed: {exc}") from None
                            except Exception as exc:  # noqa: BLE001 - http.client.IncompleteRead & co
                                raise PrefetchError(f"{spec.path}: read failed: {type(exc).__name__}") from None
                            if not chunk:
                                break
                            written += len(chunk)
                            if written > spec.size:
                                raise PrefetchError(f"{spec.path}: more than the {spec.size} bytes expected")
                            view = memoryview(chunk)
                            while view:
                                view = view[os.write(fd, view):]
                            if digest is not None:
                                digest.update(chunk)
                            done += len(chunk)
                            now = time.monotonic()
                            if progress is not None and now - last_report >= 0.5:
                                last_report = now
                                progress(model, done, total)
                    if written != spec.size:
                        raise PrefetchError(f"{spec.path}: got {written} bytes, expected {spec.size} (interrupted?)")
                    if digest is not None and digest.hexdigest() != spec.sha256:
                        raise PrefetchError(f"{spec.path}: sha256 mismatch")
                    os.fsync(fd)
                finally:
                    os.close(fd)
            for dirpath, _dirs, _names in os.walk(tmp):
                os.chmod(dirpath, 0o755)  # mkdtemp makes 0700; servers run as other users
                _fsync_dir(dirpath)
            path = self._install(tmp, model)
        except OSError as exc:
            _remove(tmp)
            raise PrefetchError(f"writing into {self.cache_dir}: {exc.strerror or exc}") from None
        except BaseException:
            _remove(tmp)
            raise
        if progress is not None:
            progress(model, done, total)
        return PrefetchResult(model=model, source=source, path=path, bytes=done, files=len(files),
                              seconds=time.monotonic() - started)

    def _install(self, tmp: str, model: str) -> str:
        """Rename the finished temporary directory to <cache>/<org>/<name>, never following
        a symlink and never replacing anything but an (incomplete) model directory."""
        parts = model.split("/")
        cfd = os.open(self.cache_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        pfd = cfd
        try:
            if len(parts) == 2:
                try:
                    os.mkdir(parts[0], 0o755, dir_fd=cfd)
                except FileExistsError:
                    pass
                try:
                    pfd = os.open(parts[0], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cfd)
                except OSError as exc:
                    raise PrefetchError(f"{self.cache_dir}/{parts[0]} is not a plain directory "
                                        f"(a symlink?): {exc.strerror}") from None
                if _looks_like_model(os.path.join(self.cache_dir, parts[0])):
                    raise PrefetchError(f"{self.cache_dir}/{parts[0]} is itself a model directory")
            name = parts[-1]
            old = None
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None:
                if stat.S_ISDIR(st.st_mode):
                    probe = os.path.join(self.cache_dir, *parts)
                    if not _looks_like_model(probe):
                        raise PrefetchError(f"{probe} exists and is not a model directory; not replaced")
                old = TEMP_PREFIX + "old-" + secrets.token_hex(6)
                os.rename(name, old, src_dir_fd=pfd, dst_dir_fd=cfd)  # moves a symlink itself, not its target
            os.rename(os.path.basename(tmp), name, src_dir_fd=cfd, dst_dir_fd=pfd)
            os.fsync(pfd)
            if pfd != cfd:
                os.fsync(cfd)
            if old is not None:
                _remove(os.path.join(self.cache_dir, old))
            return os.path.join(self.cache_dir, *parts)
        finally:
            if pfd != cfd:
                os.close(pfd)
            os.close(cfd)


def cleanup_temp(cache_dir: str) -> list[str]:
    """Remove what interrupted prefetches left in cache_dir (hidden temporary entries)."""
    removed: list[str] = []
    try:
        with os.scandir(cache_dir) as it:
            names = [e.name for e in it if e.name.startswith(TEMP_PREFIX)]
    except OSError:
        return removed
    for n in names:
        _remove(os.path.join(cache_dir, n))
        removed.append(n)
    return removed


def _remove(path: str) -> None:
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
        else:
            shutil.rmtree(path)  # fd-based on Linux: never follows symlinks inside
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _inside(path: str, directory: str) -> bool:
    try:
        return os.path.commonpath([path, directory]) == directory
    except ValueError:
        return False


class PrefetchWorker:
    """Runs prefetches one at a time on a daemon thread, so a long download never
    blocks the agent's tick. The daemon submits and collects; results and failures
    come back through `drain()`."""

    def __init__(self, prefetcher: Prefetcher, progress: Progress | None = None):
        self.prefetcher = prefetcher
        self.progress = progress
        self._lock = threading.Lock()
        self._queue: list[PrefetchRequest] = []
        self._busy: str | None = None
        self._results: list[tuple[PrefetchRequest, PrefetchResult | None, str | None]] = []
        self._cancel = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpusched-prefetch", daemon=True)
        self._thread.start()

    def pending(self) -> set[str]:
        with self._lock:
            return {r.model for r in self._queue} | ({self._busy} if self._busy else set())

    def submit(self, req: PrefetchRequest) -> bool:
        with self._lock:
            if req.model in {r.model for r in self._queue} or req.model == self._busy:
                return False
            self._queue.append(req)
        self._wake.set()
        return True

    def drain(self) -> list[tuple[PrefetchRequest, PrefetchResult | None, str | None]]:
        with self._lock:
            out, self._results = self._results, []
        return out

    def stop(self, timeout: float = 5.0) -> None:
        self._cancel.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._cancel.is_set():
            with self._lock:
                req = self._queue.pop(0) if self._queue else None
                self._busy = req.model if req else None
                if req is None:
                    self._wake.clear()
            if req is None:
                self._wake.wait(1.0)
                continue
            result, error = None, None
            try:
                result = self.prefetcher.fetch(req, self.progress, self._cancel)
            except (PrefetchError, BadModelId) as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker
                log.exception("prefetch of %s crashed", req.model)
                error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._results.append((req, result, error))
                self._busy = None
