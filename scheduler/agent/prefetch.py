"""Bring a model into the node's HF_HOME, in the Hugging Face hub layout vLLM reads.

Requested through the Node annotation `gpusched.io/prefetch` (desired state, read
every tick; whoever wants a model warm on a node, e.g. the autoscaler, writes it):

    gpusched.io/prefetch: '[{"model": "meta-llama/Llama-3.1-8B-Instruct"},
                            {"model": "org/name", "revision": "v1.2", "source": "/mnt/models"},
                            "Qwen/Qwen2.5-7B-Instruct"]'

- a JSON list (at most 32 entries, 16 KiB) of {"model", "source"?, "revision"?}
  objects; a bare string is {"model": ID}. IDs are "name" or "org/name" (see
  cache.validate_model_id); anything else is rejected with an Event.
- `source` is optional; without it the model comes from the first `--model-store`.
  With it, it must be one of the agent's stores (or lie under a directory store):
  a Node annotation cannot point the agent at arbitrary files or hosts.
- stores: `hf` (https://huggingface.co) or another http(s) endpoint that speaks the
  Hub's API (a mirror or proxy), fetched with `huggingface_hub` (the token read
  from `--hf-token-file`, a mounted Secret; redirects to the Hub's CDN followed;
  a dropped connection is retried); `s3://bucket/prefix` (S3 or compatible, through
  boto3, `--s3-endpoint`); or a directory (a PVC, NFS). The last two hold
  `<store>/<org>/<name>/` with the model's files; a directory may list them with sizes
  and sha256 in a `manifest.json` {"files": [{"path", "size", "sha256"?}, ...]}.
- where: `<cache_dir>/hub/models--org--name/{blobs,snapshots/<commit>,refs/<rev>}`,
  so a serving container with HF_HOME=<cache_dir> and HF_HUB_OFFLINE=1 finds it.
  A directory source gets a content-derived commit (the same files, the same
  snapshot) and refs/<revision or main>.
- models already cached are skipped; once cached, the entry is pruned from the
  annotation (`prune_requests`). Progress: gpusched_prefetch_bytes{model} and
  Events PrefetchStarted, PrefetchProgress, Prefetched, PrefetchFailed on the Node.

Atomicity (directory sources): each file goes into blobs/.gpusched-prefetch-*.incomplete,
is size- and sha256-checked and fsynced, then renamed to blobs/<sha256>; the snapshot's
symlinks are built in a hidden directory and renamed into place whole, and refs/ is
written last. Until then the scanner sees no complete snapshot. Leftovers are removed
on the next start (`cleanup_temp`); blobs already copied are not copied again. Writes
never go through a symlink planted in the cache.
"""
from __future__ import annotations

import contextlib
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
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Collection, Sequence

from scheduler.agent.cache import TEMP_PREFIX, BadModelId, validate_model_id

log = logging.getLogger(__name__)

MAX_REQUESTS = 32
MAX_ANNOTATION_BYTES = 16 * 1024
MAX_MANIFEST_BYTES = 16 * 2**20
MAX_FILES = 10_000
HF_ENDPOINT = "https://huggingface.co"
HF_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# a branch or tag name (git's rules, narrowed): refs/<revision> is written from it
_SAFE_REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")

Progress = Callable[[str, int, int], None]  # (model, bytes done, bytes total)


class PrefetchError(Exception):
    """A prefetch that failed; the message says why (it goes into an Event)."""


@dataclass(frozen=True)
class PrefetchRequest:
    model: str
    source: str | None = None
    revision: str | None = None  # branch, tag or 40-hex commit; None: main


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
        revision = item.get("revision")
        if revision is not None and not (isinstance(revision, str) and _SAFE_REVISION.fullmatch(revision)):
            problems.append(f"prefetch[{pos}]: revision must be a branch, tag or commit hash "
                            "(letters, digits, '.', '_', '-')")
            continue
        try:
            model = validate_model_id(item.get("model"))
        except BadModelId as exc:
            problems.append(f"prefetch[{pos}]: {exc}")
            continue
        if model in seen:
            continue
        seen.add(model)
        out.append(PrefetchRequest(model, source, revision))
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


_S3_URL = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])((?:/[A-Za-z0-9_][A-Za-z0-9._-]{0,254})*)/?$")


def _is_s3(s: str) -> bool:
    return s.startswith("s3://")


def _normalise_store(store: str) -> str:
    if store == "hf":
        return HF_ENDPOINT
    if _is_s3(store):
        if not _S3_URL.fullmatch(store):
            raise ValueError(f"model store {store!r}: use s3://bucket or s3://bucket/prefix (no '..', no query)")
        return store.rstrip("/")
    if _is_url(store):
        u = urllib.parse.urlsplit(store)
        if u.username or u.password or u.query or u.fragment:
            raise ValueError(f"model store {store!r}: no credentials, query or fragment in the URL")
        return store.rstrip("/")
    if store.startswith("file://"):
        store = urllib.parse.unquote(urllib.parse.urlsplit(store).path)
    if not os.path.isabs(store):
        raise ValueError(f"model store {store!r}: use hf, an http(s) Hub endpoint or an absolute directory")
    return os.path.realpath(store)


class Prefetcher:
    """Prefetches into `cache_dir`, an HF_HOME: models land in `<cache_dir>/hub`."""

    def __init__(self, cache_dir: str, stores: Sequence[str], *, token_file: str | None = None,
                 s3_endpoint: str | None = None,
                 timeout_s: float = 30.0, chunk_bytes: int = 4 * 2**20, free_margin_bytes: int = 256 * 2**20):
        self.cache_dir = os.path.realpath(cache_dir)
        self.hub_dir = os.path.join(self.cache_dir, "hub")
        self.stores = [_normalise_store(s) for s in stores]
        self.token_file = token_file
        self.s3_endpoint = s3_endpoint
        self._s3_client: Any = None
        # called with (model, bytes coming) before anything is written; raises
        # PrefetchError when the cache quota cannot make room (the daemon sets it)
        self.make_room: Callable[[str, int], None] | None = None
        self.timeout_s = timeout_s
        self.progress_every_s = 2.0  # how often a Hub download's progress is measured
        self.chunk = chunk_bytes
        self.free_margin = free_margin_bytes

    # --- where from ---------------------------------------------------------------

    def source_for(self, req: PrefetchRequest) -> str:
        validate_model_id(req.model)
        if req.source is None:
            if not self.stores:
                raise PrefetchError("no source given and the agent has no --model-store")
            store = self.stores[0]
            if _is_url(store):
                return store
            return f"{store}/{req.model}" if _is_s3(store) else os.path.join(store, *req.model.split("/"))
        src = req.source
        if _is_s3(src):
            norm = src.rstrip("/")
            if not _S3_URL.fullmatch(norm) or not any(
                    _is_s3(st) and norm.startswith(st + "/") for st in self.stores):
                raise PrefetchError(f"source {src[:200]!r} is not under an allowed s3:// --model-store")
            return norm
        if src == "hf":
            src = HF_ENDPOINT
        if _is_url(src):
            # a Hub endpoint, exactly one of the stores: the Node annotation picks among
            # the endpoints the agent was started with, never names a host of its own
            if src.rstrip("/") not in self.stores:
                raise PrefetchError(f"source {src[:200]!r} is not one of the agent's --model-store endpoints")
            return src.rstrip("/")
        if src.startswith("file://"):
            src = urllib.parse.unquote(urllib.parse.urlsplit(src).path)
        if not os.path.isabs(src):
            raise PrefetchError(f"source {src[:200]!r}: use an absolute path or an http(s) URL")
        real = os.path.realpath(src)
        if not any(s.startswith("/") and _inside(real, s) for s in self.stores):
            raise PrefetchError(f"source {src[:200]!r} is not under an allowed --model-store")
        return real

    def plan(self, source: str) -> list[FileSpec]:
        if _is_s3(source):
            return self._plan_s3(source)
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

    def _s3(self) -> Any:
        """An S3 client: credentials from boto3's usual chain (AWS_* variables, a mounted
        credentials file through AWS_SHARED_CREDENTIALS_FILE, IRSA / pod identity), the
        endpoint from --s3-endpoint for S3-compatible stores (MinIO, Ceph RGW, R2)."""
        if self._s3_client is None:
            import boto3
            from botocore.config import Config

            self._s3_client = boto3.client("s3", endpoint_url=self.s3_endpoint, config=Config(
                connect_timeout=self.timeout_s, read_timeout=self.timeout_s,
                retries={"max_attempts": 5, "mode": "standard"}))
        return self._s3_client

    def _plan_s3(self, source: str) -> list[FileSpec]:
        """The objects under s3://bucket/prefix/org/name/, as files (hidden names skipped)."""
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, prefix = source[len("s3://"):].partition("/")
        prefix = prefix + "/" if prefix else ""
        files: list[FileSpec] = []
        try:
            pages = self._s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    rel = str(obj["Key"])[len(prefix):]
                    if not rel or rel.endswith("/") or any(p.startswith(".") for p in rel.split("/")):
                        continue
                    if rel == "manifest.json":
                        continue
                    files.append(FileSpec(_safe_relpath(rel), int(obj["Size"])))
                    if len(files) > MAX_FILES:
                        raise PrefetchError(f"source has more than {MAX_FILES} files")
        except (BotoCoreError, ClientError) as exc:
            raise PrefetchError(f"listing {source}: {exc}") from None
        if not files:
            raise PrefetchError(f"source {source} holds no files")
        return files

    def _open_source(self, source: str, spec: FileSpec) -> Any:
        if _is_s3(source):
            from botocore.exceptions import BotoCoreError, ClientError

            bucket, _, prefix = source[len("s3://"):].partition("/")
            key = f"{prefix}/{spec.path}" if prefix else spec.path
            try:
                body = self._s3().get_object(Bucket=bucket, Key=key)["Body"]
            except (BotoCoreError, ClientError) as exc:
                raise PrefetchError(f"{source}/{spec.path}: {exc}") from None
            return contextlib.closing(body)
        full = os.path.realpath(os.path.join(source, *spec.path.split("/")))
        if not _inside(full, source) and not any(s.startswith("/") and _inside(full, s) for s in self.stores):
            raise PrefetchError(f"{spec.path} resolves outside the model store")
        try:
            return open(full, "rb")
        except OSError as exc:
            raise PrefetchError(f"{spec.path}: {exc.strerror or exc}") from None

    def _check_space(self, total: int) -> None:
        try:
            vfs = os.statvfs(self.cache_dir)
        except OSError as exc:
            raise PrefetchError(f"cache directory {self.cache_dir}: {exc.strerror or exc}") from None
        if vfs.f_bavail * vfs.f_frsize < total + self.free_margin:
            raise PrefetchError(f"not enough space in {self.cache_dir}: need {total} bytes, "
                                f"{vfs.f_bavail * vfs.f_frsize} free")

    # --- the copy -----------------------------------------------------------------

    def fetch(self, req: PrefetchRequest, progress: Progress | None = None,
              cancel: threading.Event | None = None) -> PrefetchResult:
        """Bring req.model into <cache_dir>/hub/models--org--name, the layout the
        Hugging Face client (and so vLLM) reads from HF_HOME."""
        started = time.monotonic()
        model = validate_model_id(req.model)
        source = self.source_for(req)
        if _is_url(source):
            path, done, n_files = self._fetch_hub(model, source, req.revision, progress)
        else:
            path, done, n_files = self._fetch_dir(model, source, req.revision, progress, cancel)
        if progress is not None:
            progress(model, done, done)
        return PrefetchResult(model=model, source=source, path=path, bytes=done, files=n_files,
                              seconds=time.monotonic() - started)

    def _token(self) -> str | None:
        """The Hub token, read from its file (a mounted Secret) on every prefetch, so a
        rotated Secret is used without a restart."""
        if self.token_file is None:
            return None
        try:
            with open(self.token_file, "rb") as f:
                raw = f.read(4097)
        except OSError as exc:
            raise PrefetchError(f"token file {self.token_file}: {exc.strerror or exc}") from None
        token = raw.decode("ascii", "replace").strip()
        if not token or len(raw) > 4096 or not re.fullmatch(r"[\x21-\x7e]+", token):
            raise PrefetchError(f"token file {self.token_file} does not hold one token")
        return token

    def _fetch_hub(self, model: str, endpoint: str, revision: str | None,
                   progress: Progress | None) -> tuple[str, int, int]:
        # huggingface_hub writes blobs/, snapshots/<commit>/ and refs/<branch> itself,
        # resumes *.incomplete blobs left by an interrupted run, follows the Hub's
        # redirects to its CDN and sends the token only to the Hub.
        from huggingface_hub import HfApi, snapshot_download
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()  # tqdm's carriage returns do not belong in a daemon's log
        token = self._token()
        rev = revision or "main"
        try:
            info = HfApi(endpoint=endpoint, token=token).model_info(model, revision=rev, files_metadata=True,
                                                                     timeout=self.timeout_s)
            siblings = info.siblings or []
            total = sum(int(s.size or 0) for s in siblings)
            if self.make_room is not None:
                self.make_room(model, total)
            self._check_space(total)
            if progress is not None:
                progress(model, 0, total)
            blobs = os.path.join(self._model_dir(model), "blobs")  # refuses planted symlinks first
            watcher = _BlobWatcher(blobs, model, total, progress, self.progress_every_s)
            try:
                path = snapshot_download(model, revision=rev, cache_dir=self.hub_dir, token=token,
                                         endpoint=endpoint, etag_timeout=self.timeout_s, max_workers=4)
            finally:
                watcher.stop()
        except PrefetchError:
            raise
        except Exception as exc:  # noqa: BLE001 - HfHubHTTPError, RepositoryNotFoundError, httpx errors, OSError
            raise PrefetchError(f"{model}@{rev} from {endpoint}: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:300] if str(exc) else ''}") from None
        return path, total, len(siblings)

    def _fetch_dir(self, model: str, source: str, revision: str | None, progress: Progress | None,
                   cancel: threading.Event | None) -> tuple[str, int, int]:
        try:
            files = self.plan(source)
        except OSError as exc:
            raise PrefetchError(f"reading {source}: {exc.strerror or exc}") from None
        total = sum(f.size for f in files)
        if self.make_room is not None:
            self.make_room(model, total)
        self._check_space(total)
        try:
            model_dir = self._model_dir(model)
            blobs = os.path.join(model_dir, "blobs")
            done = 0
            last_report = 0.0
            hashes: list[tuple[str, str]] = []
            for spec in files:
                digest = self._copy_blob(source, spec, blobs, cancel)
                hashes.append((spec.path, digest))
                done += spec.size
                now = time.monotonic()
                if progress is not None and now - last_report >= 0.5:
                    last_report = now
                    progress(model, done, total)
            commit = revision if revision and HF_COMMIT.fullmatch(revision) else content_commit(hashes)
            path = self._link_snapshot(model_dir, commit, hashes)
            if not (revision and HF_COMMIT.fullmatch(revision)):
                _write_atomic(os.path.join(model_dir, "refs"), revision or "main", commit)
        except OSError as exc:
            raise PrefetchError(f"writing into {self.hub_dir}: {exc.strerror or exc}") from None
        return path, done, len(files)

    def _model_dir(self, model: str) -> str:
        """<hub>/models--org--name with blobs/, snapshots/ and refs/, each a real directory:
        a symlink planted in the cache is refused, never followed for a write."""
        model_dir = os.path.join(self.hub_dir, hub_folder(model))
        for d in (self.hub_dir, model_dir, *(os.path.join(model_dir, s) for s in ("blobs", "snapshots", "refs"))):
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                pass
            st = os.lstat(d)
            if not stat.S_ISDIR(st.st_mode):
                raise PrefetchError(f"{d} is not a plain directory (a symlink?); not written through")
        return model_dir

    def _copy_blob(self, source: str, spec: FileSpec, blobs: str, cancel: threading.Event | None) -> str:
        """Copy one file into blobs/<sha256>, named by its content as the Hub names LFS
        blobs; a blob already there (an earlier, interrupted prefetch) is not copied again."""
        if spec.sha256 and os.path.isfile(os.path.join(blobs, spec.sha256)) \
                and os.path.getsize(os.path.join(blobs, spec.sha256)) == spec.size:
            return spec.sha256
        tmp = os.path.join(blobs, f"{TEMP_PREFIX}{secrets.token_hex(6)}.incomplete")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        digest = hashlib.sha256()
        written = 0
        try:
            try:
                with self._open_source(source, spec) as src:
                    while True:
                        if cancel is not None and cancel.is_set():
                            raise PrefetchError("cancelled")
                        try:
                            chunk = src.read(self.chunk)
                        except (OSError, ValueError) as exc:
                            raise PrefetchError(f"{spec.path}: read failed: {exc}") from None
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > spec.size:
                            raise PrefetchError(f"{spec.path}: more than the {spec.size} bytes expected")
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view):]
                        digest.update(chunk)
                if written != spec.size:
                    raise PrefetchError(f"{spec.path}: got {written} bytes, expected {spec.size} (interrupted?)")
                hexdigest = digest.hexdigest()
                if spec.sha256 is not None and hexdigest != spec.sha256:
                    raise PrefetchError(f"{spec.path}: sha256 mismatch")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, os.path.join(blobs, hexdigest))  # same content, same name: replacing is harmless
        except BaseException:
            _remove(tmp)
            raise
        return hexdigest

    def _link_snapshot(self, model_dir: str, commit: str, hashes: list[tuple[str, str]]) -> str:
        """snapshots/<commit>/<path> -> ../../blobs/<sha256>, built in a hidden directory
        (the scanner skips it) and renamed into place whole."""
        snapshots = os.path.join(model_dir, "snapshots")
        final = os.path.join(snapshots, commit)
        tmp = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=snapshots)
        try:
            for rel, digest in hashes:
                parts = rel.split("/")
                target = os.path.join(tmp, *parts)
                os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                os.symlink("/".join([".."] * (len(parts) + 1) + ["blobs", digest]), target)
            for dirpath, _dirs, _names in os.walk(tmp):
                os.chmod(dirpath, 0o755)  # mkdtemp makes 0700; servers run as other users
            _fsync_dir(tmp)
            old = None
            if os.path.lexists(final):
                old = os.path.join(snapshots, f"{TEMP_PREFIX}old-{secrets.token_hex(6)}")
                os.rename(final, old)  # moves a symlink itself, never its target
            os.rename(tmp, final)
            _fsync_dir(snapshots)
            if old is not None:
                _remove(old)
        except BaseException:
            _remove(tmp)
            raise
        return final


def evict_model(cache_dir: str, model: str) -> bool:
    """Delete a model from <cache_dir>/hub: renamed to a hidden name first (one atomic
    step: a reader sees the model whole or not at all), then removed. False when it was
    not there."""
    hub = os.path.join(os.path.realpath(cache_dir), "hub")
    src = os.path.join(hub, hub_folder(validate_model_id(model)))
    if not os.path.lexists(src):
        return False
    gone = os.path.join(hub, f"{TEMP_PREFIX}evict-{secrets.token_hex(6)}")
    os.rename(src, gone)  # moves a symlink itself, never its target
    _remove(gone)
    return True


class _BlobWatcher:
    """Reports a Hub download's progress from the bytes in the model's blobs/ (finished
    blobs and *.incomplete ones), every 2 s on its own thread: huggingface_hub reports
    progress only to tqdm bars, which a daemon's log should not carry."""

    def __init__(self, blobs: str, model: str, total: int, progress: Progress | None, every_s: float = 2.0):
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if progress is None or total <= 0:
            return
        self._args = (blobs, model, total, progress, every_s)
        self._thread = threading.Thread(target=self._run, name="gpusched-prefetch-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        blobs, model, total, progress, every_s = self._args
        while not self._stop.wait(every_s):
            try:
                progress(model, min(_dir_bytes(blobs), total), total)
            except OSError:
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)


def _dir_bytes(path: str, limit: int = MAX_FILES) -> int:
    total = 0
    with os.scandir(path) as it:
        for n, e in enumerate(it):
            if n >= limit:
                break
            try:
                if e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def hub_folder(model: str) -> str:
    """The hub cache's folder name for a model: org/name -> models--org--name."""
    return "models--" + model.replace("/", "--")


def content_commit(hashes: Sequence[tuple[str, str]]) -> str:
    """A 40-hex revision for a directory source, from its (path, sha256) pairs: the same
    files give the same snapshot, so a second prefetch of an unchanged store is a no-op."""
    h = hashlib.sha1(usedforsecurity=False)
    for rel, digest in sorted(hashes):
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()


def _write_atomic(directory: str, name: str, text: str) -> None:
    parts = name.split("/")
    target = os.path.join(directory, *parts)
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    tmp = os.path.join(os.path.dirname(target), f"{TEMP_PREFIX}{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, target)


STALE_INCOMPLETE_S = 600.0


def cleanup_temp(cache_dir: str, now: float | None = None) -> list[str]:
    """Remove what interrupted prefetches left: hidden temporary entries in cache_dir (an
    older agent's work directories) and in each hub model's blobs/, snapshots/ and refs/,
    and huggingface_hub's `*.incomplete` blobs untouched for STALE_INCOMPLETE_S (its
    downloads use a per-process name, so a killed one is never resumed, and the scanner
    counts no model while one lies in its blobs/). A fresher one may be a download in
    progress by another process and is left alone."""
    now = time.time() if now is None else now
    removed: list[str] = []
    hub = os.path.join(cache_dir, "hub")
    places = [cache_dir, hub]
    try:
        with os.scandir(hub) as it:
            for e in it:
                if e.name.startswith("models--") and e.is_dir(follow_symlinks=False):
                    places += [os.path.join(hub, e.name, d) for d in ("blobs", "snapshots", "refs")]
    except OSError:
        pass
    for place in places:
        try:
            with os.scandir(place) as it:
                names = [e.name for e in it if e.name.startswith(TEMP_PREFIX)
                         or (e.name.endswith(".incomplete") and place.endswith("blobs")
                             and _older_than(e, now - STALE_INCOMPLETE_S))]
        except OSError:
            continue
        for n in names:
            _remove(os.path.join(place, n))
            removed.append(os.path.relpath(os.path.join(place, n), cache_dir))
    return removed


def _older_than(e: os.DirEntry[str], when: float) -> bool:
    try:
        return e.stat(follow_symlinks=False).st_mtime < when
    except OSError:
        return False


def prune_requests(text: str | None, cached: Collection[str]) -> str | None:
    """The `gpusched.io/prefetch` value without the entries whose model is cached now;
    None when nothing is to be removed. Entries the agent cannot parse are kept as they
    are (their writer sees the PrefetchRejected Event), so pruning never loses a request."""
    if not text or len(text.encode()) > MAX_ANNOTATION_BYTES:
        return None
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, list):
        return None

    def done(item: object) -> bool:
        model = item if isinstance(item, str) else item.get("model") if isinstance(item, dict) else None
        return isinstance(model, str) and model in cached

    kept = [item for item in raw if not done(item)]
    if len(kept) == len(raw):
        return None
    return json.dumps(kept, separators=(",", ":"))


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
