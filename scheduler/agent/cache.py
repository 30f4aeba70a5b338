"""Scan model cache directories for complete models. Reads only; never writes.

Two layouts, in any number of cache directories:

- Hugging Face hub: `<dir>/models--<org>--<name>/snapshots/<rev>/...` whose files are
  symlinks into `<dir>/models--<org>--<name>/blobs/` (or plain copies, as the hub
  client makes where symlinks are unavailable). `<dir>/hub/` is scanned the same
  way, so HF_HOME works as well as HF_HUB_CACHE. The snapshot `refs/main` names is
  preferred, else the newest complete one. This is the layout prefetch writes and
  vLLM reads with HF_HOME set.
- plain: `<dir>/<org>/<name>/` or `<dir>/<name>/` holding a config.json or weight
  files (for servers started with `--model=/path`; vLLM with HF_HOME does not read it).

A model counts only when complete: every snapshot file resolves to a regular file
(into blobs/ for the hub layout), no `*.incomplete` (or .part/.partial/.tmp) file
in its blobs/ or model directory, no 0-byte weight file, every shard a
`*.index.json` names present, at least one weight file (*.safetensors, *.bin,
*.gguf, *.pt, *.pth), every file readable. Bytes: each distinct file (inode)
once. Hidden entries (names starting with '.', e.g. prefetch's temporary
directories) are never looked at.

Tier: `gpu` when the caller says a local server has the model loaded;
`host-memory` when at least `host_memory_fraction` of the weight bytes are in the
page cache, measured with mincore(2) on read-only mmaps of each weight file (no
file data is read; files over 256 MiB are sampled at 64 evenly spaced 4 MiB
windows, so a tick costs microseconds per file); otherwise `disk`. Linux
reports page-cache residency only to a process that owns the file or could open
it for writing (kernel >= 5.2 otherwise claims every page resident), so files we
may not write are reported `disk` rather than guessed.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import json
import logging
import os
import re
import stat
import sys
from dataclasses import asdict, dataclass, field
from typing import Iterable

from scheduler import nodeinfo

log = logging.getLogger(__name__)

# A model id is "name" or "org/name": the characters the Hugging Face hub allows,
# no "..", no "--" (it separates org and name in the hub's folder names), 96 per part.
_SAFE_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
SAFE_MODEL_ID = re.compile(rf"^{_SAFE_PART}(?:/{_SAFE_PART})?$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
PARTIAL_SUFFIXES = (".incomplete", ".part", ".partial", ".tmp", ".download")
TEMP_PREFIX = ".gpusched-prefetch-"  # prefetch's work directories (hidden, never scanned)
MAX_DEPTH = 8
MAX_FILES_PER_MODEL = 50_000
MAX_PROBLEMS = 100
TIER_RANK = {"disk": 0, "host-memory": 1, "gpu": 2}


class BadModelId(ValueError):
    """A model id that could escape a directory or confuse a shell; the message says why."""


def validate_model_id(model: object) -> str:
    if not isinstance(model, str):
        raise BadModelId(f"model id must be a string, got {type(model).__name__}")
    if not SAFE_MODEL_ID.fullmatch(model) or ".." in model or "--" in model:
        raise BadModelId(f"unsafe model id {model[:100]!r}: use 'name' or 'org/name' made of letters, digits, "
                         "'.', '_', '-' (no '..', '--', leading or trailing punctuation; at most 96 per part)")
    return model


def cache_dir_problem(path: str) -> tuple[str, str] | None:
    """Why `path` cannot be scanned as a cache directory, as (kind, message); None when it
    can. Each cause gets its own words: only a missing directory is "not there (yet)";
    a symlink loop, a dangling link or a plain file is a mistake someone must fix.
    Kinds: missing, symlink-loop, dangling-symlink, not-a-directory, unreachable, unreadable."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink-loop", (f"cache directory {path} is a symlink loop (too many levels of symbolic "
                                    "links); point it at a real directory")
        if exc.errno == errno.ENOTDIR:
            return "not-a-directory", (f"cache directory {path}: a parent of it is a file, not a directory")
        if exc.errno == errno.ENOENT:
            if os.path.islink(path):
                try:
                    target = os.readlink(path)
                except OSError:
                    target = "?"
                return "dangling-symlink", (f"cache directory {path} is a symlink to {target}, which does "
                                            "not exist")
            return "missing", f"cache directory {path} does not exist (yet); it is scanned when it does"
        return "unreachable", f"cache directory {path} cannot be reached: {_why(exc)}"
    if not stat.S_ISDIR(st.st_mode):
        mode = st.st_mode
        kind = ("a plain file" if stat.S_ISREG(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a named pipe" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "something else")
        return "not-a-directory", f"cache directory {path} is {kind}, not a directory"
    if not os.access(path, os.R_OK | os.X_OK):
        return "unreadable", (f"cache directory {path} is not readable by UID {os.geteuid()} (needs read and "
                              "search permission)")
    return None


@dataclass(frozen=True)
class ModelEntry:
    model: str
    bytes: int
    tier: str  # one of contract.CACHE_TIERS
    path: str
    layout: str  # "hf" or "plain"
    revision: str | None = None
    files: int = 0
    resident_fraction: float | None = None  # of weight bytes in the page cache; None: not measured


@dataclass(frozen=True)
class CacheScan:
    models: tuple[ModelEntry, ...] = ()
    problems: tuple[str, ...] = ()  # bad input worth an Event: loops, unreadable files, bad ids ...
    incomplete: tuple[str, ...] = ()  # "model: why" for models seen but not (yet) complete

    def cached_models(self) -> tuple[nodeinfo.CachedModel, ...]:
        return tuple(nodeinfo.CachedModel(m.model, m.bytes, m.tier) for m in self.models)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Files:
    """What a walk over one model's files found."""
    sizes: dict[tuple[int, int], int] = field(default_factory=dict)  # (dev, inode) -> bytes
    weights: dict[tuple[int, int], str] = field(default_factory=dict)  # (dev, inode) -> real path
    names: set[str] = field(default_factory=set)  # relative paths present
    indexes: list[str] = field(default_factory=list)  # real paths of *.index.json
    count: int = 0
    incomplete: list[str] = field(default_factory=list)


class _Scan:
    def __init__(self, loaded: Iterable[str], measure_residency: bool, host_memory_fraction: float):
        self.loaded = set(loaded)
        self.measure = measure_residency
        self.fraction = host_memory_fraction
        self.problems: list[str] = []
        self.incomplete: list[str] = []
        self.models: dict[str, ModelEntry] = {}
        self.seen_dirs: set[tuple[int, int]] = set()

    def problem(self, msg: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(msg)
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("... more problems not listed")

    # --- walking ---------------------------------------------------------------

    def listdir(self, path: str, *, what: str) -> list[os.DirEntry[str]] | None:
        """Entries of a directory, sorted; None when it vanished or cannot be read."""
        try:
            with os.scandir(path) as it:
                return sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            return None  # vanished mid-scan: not there is not cached
        except NotADirectoryError:
            return None
        except OSError as exc:
            self.problem(f"cannot read {what} {path}: {_why(exc)}")
            return None

    def walk(self, top: str, files: _Files, *, blobs: str | None = None, where: str = "") -> bool:
        """Collect the regular files under top (not following directory symlinks).
        Returns False when the model cannot be trusted as complete."""
        ok = True
        stack = [(top, "", 0)]
        while stack:
            path, rel, depth = stack.pop()
            entries = self.listdir(path, what="model directory")
            if entries is None:
                files.incomplete.append(f"cannot list {rel or '.'}")
                return False
            for e in entries:
                name = e.name
                rel_e = f"{rel}/{name}" if rel else name
                full = os.path.join(path, name)
                files.count += 1
                if files.count > MAX_FILES_PER_MODEL:
                    self.problem(f"{where}: more than {MAX_FILES_PER_MODEL} files; not counted")
                    return False
                if name.endswith(PARTIAL_SUFFIXES):
                    files.incomplete.append(f"partial file {rel_e}")
                    ok = False
                    continue
                try:
                    is_link = e.is_symlink()
                    if not is_link and e.is_dir(follow_symlinks=False):
                        if depth + 1 >= MAX_DEPTH:
                            self.problem(f"{where}: {rel_e} is nested deeper than {MAX_DEPTH}; not counted")
                            return False
                        stack.append((full, rel_e, depth + 1))
                        continue
                    st = os.stat(full)  # follows a symlink: ELOOP for loops, ENOENT when dangling
                except FileNotFoundError:
                    if is_link:
                        files.incomplete.append(f"{rel_e} points to a missing file")
                    ok = False  # or it vanished mid-scan
                    continue
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        self.problem(f"{where}: symlink loop at {rel_e}")
                    else:
                        self.problem(f"{where}: cannot stat {rel_e}: {_why(exc)}")
                    ok = False
                    continue
                real = os.path.realpath(full) if is_link else full
                if is_link and blobs is not None and not _inside(real, blobs):
                    self.problem(f"{where}: {rel_e} points outside the model's blobs/ ({real})")
                    ok = False
                    continue
                if stat.S_ISDIR(st.st_mode):
                    # a symlinked directory: not followed (loops, escapes)
                    self.problem(f"{where}: {rel_e} is a symlink to a directory; not followed")
                    ok = False
                    continue
                if not stat.S_ISREG(st.st_mode):
                    self.problem(f"{where}: {rel_e} is not a regular file")
                    ok = False
                    continue
                if not os.access(full, os.R_OK):
                    self.problem(f"{where}: {rel_e} is not readable")
                    ok = False
                    continue
                key = (st.st_dev, st.st_ino)
                files.names.add(rel_e)
                files.sizes[key] = st.st_size
                lower = name.lower()
                if lower.endswith(WEIGHT_SUFFIXES):
                    if st.st_size == 0:
                        self.problem(f"{where}: weight file {rel_e} is empty (0 bytes)")
                        ok = False
                        continue
                    files.weights[key] = real
                elif lower.endswith(".index.json"):
                    files.indexes.append(rel_e)
        return ok

    def check_indexes(self, top: str, files: _Files, where: str) -> bool:
        ok = True
        for rel in files.indexes:
            try:
                with open(os.path.join(top, rel), "rb") as f:
                    raw = f.read(32 * 2**20 + 1)
                if len(raw) > 32 * 2**20:
                    raise ValueError("larger than 32 MiB")
                weight_map = json.loads(raw).get("weight_map", {})
                if not isinstance(weight_map, dict):
                    raise ValueError("weight_map is not an object")
            except FileNotFoundError:
                ok = False
                continue
            except (OSError, ValueError, AttributeError) as exc:
                self.problem(f"{where}: unreadable shard index {rel}: {_why(exc)}")
                ok = False
                continue
            base = os.path.dirname(rel)
            for shard in sorted(set(map(str, weight_map.values()))):
                if shard.startswith("/") or ".." in shard.split("/"):
                    self.problem(f"{where}: shard index {rel} names an unsafe path {shard[:80]!r}")
                    ok = False
                    break
                want = f"{base}/{shard}" if base else shard
                if want not in files.names:
                    files.incomplete.append(f"shard {want} listed in {rel} is missing")
                    ok = False
                    break
        return ok

    # --- layouts ---------------------------------------------------------------

    def scan_root(self, root: str) -> None:
        bad = cache_dir_problem(root)
        if bad is not None:
            self.problem(bad[1])
            return
        entries = self.listdir(root, what="cache directory")
        if entries is None:
            return
        for e in entries:
            name = e.name
            if name.startswith(".") or name == "lost+found":
                continue  # hidden: .locks, prefetch temp dirs, ...
            full = os.path.join(root, name)
            if name.startswith("models--"):
                self.scan_hf_model(full, name)
            elif name.startswith(("datasets--", "spaces--")):
                continue
            elif name == "hub" and self.is_dir(full, root):
                self.scan_root(full)
            elif self.is_dir(full, root):
                self.scan_plain_top(full, name, root)

    def is_dir(self, path: str, root: str) -> bool:
        """A directory we may descend into: a real one, or a symlink to one we have not
        visited yet (a loop or a second name for the same directory is skipped)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.problem(f"symlink loop at {path}")
            else:
                self.problem(f"cannot stat {path}: {_why(exc)}")
            return False
        if not stat.S_ISDIR(st.st_mode):
            return False
        key = (st.st_dev, st.st_ino)
        if key in self.seen_dirs:
            if os.path.islink(path):
                self.problem(f"{path} is a symlink to a directory already scanned; skipped")
            return False
        self.seen_dirs.add(key)
        return True

    def scan_hf_model(self, model_dir: str, folder: str) -> None:
        rest = folder[len("models--"):]
        parts = rest.split("--")
        model = "/".join(parts) if len(parts) <= 2 else None
        try:
            if model is None:
                raise BadModelId(f"{folder!r} does not name one model")
            validate_model_id(model)
        except BadModelId as exc:
            self.problem(f"skipped {model_dir}: {exc}")
            return
        where = f"{model} ({model_dir})"
        if not self.is_dir(model_dir, model_dir):
            return
        blobs = os.path.join(model_dir, "blobs")
        blob_entries = self.listdir(blobs, what="blobs directory")
        if blob_entries is not None:
            partial = [e.name for e in blob_entries if e.name.endswith(PARTIAL_SUFFIXES)]
            if partial:
                self.incomplete.append(f"{model}: download in progress (blobs/{partial[0]})")
                return
        snapshots = os.path.join(model_dir, "snapshots")
        revs = self.listdir(snapshots, what="snapshots directory")
        if not revs:
            self.incomplete.append(f"{model}: no snapshot")
            return
        preferred = _read_ref(os.path.join(model_dir, "refs", "main"))
        revs = [e for e in revs if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]

        def order(e: os.DirEntry[str]) -> tuple[int, float]:
            try:
                mtime = e.stat(follow_symlinks=False).st_mtime
            except OSError:
                mtime = 0.0
            return (0 if e.name == preferred else 1, -mtime)

        reasons = []
        blobs_real = os.path.realpath(blobs)
        for e in sorted(revs, key=order):
            files = _Files()
            top = os.path.join(snapshots, e.name)
            ok = self.walk(top, files, blobs=blobs_real, where=where)
            ok = self.check_indexes(top, files, where) and ok
            if ok and not files.weights:
                files.incomplete.append("no weight files")
                ok = False
            if ok:
                self.add(model, files, path=top, layout="hf", revision=e.name)
                return
            reasons.append(f"{e.name[:12]}: {files.incomplete[0] if files.incomplete else 'see problems'}")
        self.incomplete.append(f"{model}: no complete snapshot ({'; '.join(reasons[:3])})")

    def looks_like_model(self, path: str) -> bool:
        entries = self.listdir(path, what="directory")
        return entries is not None and any(_is_model_marker(e.name) for e in entries)

    def scan_plain_top(self, path: str, name: str, root: str) -> None:
        if self.looks_like_model(path):
            self.scan_plain_model(path, name)
            return
        entries = self.listdir(path, what="directory")
        for e in entries or ():
            if e.name.startswith("."):
                continue
            full = os.path.join(path, e.name)
            try:
                if not e.is_dir():  # follows a symlink; loops are caught by is_dir() below
                    continue
            except OSError:
                pass
            if self.looks_like_model(full) and self.is_dir(full, root):
                self.scan_plain_model(full, f"{name}/{e.name}")

    def scan_plain_model(self, path: str, model: str) -> None:
        try:
            validate_model_id(model)
        except BadModelId as exc:
            self.problem(f"skipped {path}: {exc}")
            return
        where = f"{model} ({path})"
        files = _Files()
        ok = self.walk(path, files, where=where)
        ok = self.check_indexes(path, files, where) and ok
        if ok and not files.weights:
            files.incomplete.append("no weight files")
            ok = False
        if ok:
            self.add(model, files, path=path, layout="plain")
        else:
            self.incomplete.append(f"{model}: {files.incomplete[0] if files.incomplete else 'see problems'}")

    def add(self, model: str, files: _Files, *, path: str, layout: str, revision: str | None = None) -> None:
        total = sum(files.sizes.values())
        resident = None
        tier = "disk"
        if model in self.loaded:
            tier = "gpu"
        elif self.measure:
            resident = _resident_fraction(files.weights.values())
            if resident is not None and resident >= self.fraction:
                tier = "host-memory"
        entry = ModelEntry(model=model, bytes=total, tier=tier, path=path, layout=layout, revision=revision,
                           files=len(files.sizes), resident_fraction=resident)
        old = self.models.get(model)
        if old is None or TIER_RANK[entry.tier] > TIER_RANK[old.tier]:
            self.models[model] = entry


def scan_cache(dirs: Iterable[str | os.PathLike[str]], *, loaded: Iterable[str] = (),
               measure_residency: bool = True, host_memory_fraction: float = 0.9) -> CacheScan:
    """Complete models under `dirs`. Never raises for what it finds on disk: problems
    (symlink loops, unreadable files, bad ids, empty weights) are returned as text."""
    s = _Scan(loaded, measure_residency, host_memory_fraction)
    for d in dirs:
        root = os.path.abspath(os.fspath(d))
        try:
            st = os.stat(root)
            s.seen_dirs.add((st.st_dev, st.st_ino))
        except OSError:
            pass  # scan_root reports it
        try:
            s.scan_root(root)
        except RecursionError:  # pragma: no cover - the walk is iterative; belt and braces
            s.problem(f"cache directory {root}: too deeply nested")
    models = tuple(sorted(s.models.values(), key=lambda m: m.model))
    return CacheScan(models=models, problems=tuple(s.problems), incomplete=tuple(s.incomplete))


# --- helpers ----------------------------------------------------------------------


def last_access(path: str, limit: int = MAX_FILES_PER_MODEL) -> float:
    """The latest access or change time (epoch seconds) of the files under a model's
    directory, symlinks followed to their blobs; 0.0 when none can be read. With
    relatime mounts atime moves at most daily, which is fine grain enough for LRU
    eviction; the agent adds its own sightings of models in use."""
    latest = 0.0
    seen = 0
    for dirpath, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for n in names:
            seen += 1
            if seen > limit:
                return latest
            try:
                st = os.stat(os.path.join(dirpath, n))
            except OSError:
                continue
            latest = max(latest, st.st_atime, st.st_mtime)
    return latest


def _why(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _inside(path: str, directory: str) -> bool:
    try:
        return os.path.commonpath([path, directory]) == directory
    except ValueError:
        return False


def _read_ref(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            ref = f.read(100).decode("ascii", "replace").strip()
    except OSError:
        return None
    return ref if re.fullmatch(r"[0-9a-f]{7,64}", ref) else None


def _is_model_marker(name: str) -> bool:
    n = name.lower()
    return n == "config.json" or n.endswith(WEIGHT_SUFFIXES) or n.endswith(".index.json")


def _looks_like_model(path: str) -> bool:
    """Whether a directory holds a config.json, weights or a shard index (prefetch uses it)."""
    try:
        with os.scandir(path) as it:
            return any(_is_model_marker(e.name) for e in it)
    except OSError:
        return False


# --- page-cache residency (Linux mincore on a PROT_READ mapping) -------------------

_WINDOW = 4 << 20  # bytes checked per window
_MAX_WINDOWS = 64  # per file: a 140 GB model costs 64 x 1,024 page flags per file, not 34 M


class _Libc:
    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.mmap = libc.mmap
        self.mmap.restype = ctypes.c_void_p
        self.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        self.munmap = libc.munmap
        self.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self.mincore = libc.mincore
        self.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


@functools.lru_cache(maxsize=1)
def _get_libc() -> _Libc | None:
    """libc's mmap and mincore, loaded once; None (said once) where they are not there."""
    try:
        if not sys.platform.startswith("linux"):
            raise OSError("not Linux")
        return _Libc()
    except (OSError, AttributeError) as exc:
        log.info("page-cache residency not measurable here (%s): cached models report tier 'disk'", exc)
        return None


def resident_bytes(path: str) -> tuple[int, int] | None:
    """(bytes resident in the page cache, file size), or None where the kernel would not
    tell the truth (file neither ours nor writable by us) or mincore is unavailable."""
    libc = _get_libc()
    if libc is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        euid = os.geteuid()
        if not (euid == 0 or st.st_uid == euid or os.access(path, os.W_OK)):
            return None
        size = st.st_size
        if size == 0:
            return 0, 0
        page = os.sysconf("SC_PAGE_SIZE")
        # Files up to 64 windows are checked whole; larger ones at 64 evenly spaced
        # windows, and the resident share of those stands for the file.
        n_windows = -(-size // _WINDOW)
        if n_windows <= _MAX_WINDOWS:
            offsets = [i * _WINDOW for i in range(n_windows)]
        else:
            step = (n_windows - 1) / (_MAX_WINDOWS - 1)
            offsets = sorted({round(i * step) * _WINDOW for i in range(_MAX_WINDOWS)})
        checked = resident = 0
        for off in offsets:
            length = min(_WINDOW, size - off)
            addr = libc.mmap(None, length, 1, 1, fd, off)  # PROT_READ, MAP_SHARED: reads nothing
            if addr is None or addr == ctypes.c_void_p(-1).value:
                return None
            try:
                npages = (length + page - 1) // page
                vec = (ctypes.c_ubyte * npages)()
                if libc.mincore(addr, length, vec) != 0:
                    return None
                resident += min((npages - bytes(vec).count(0)) * page, length)
                checked += length
            finally:
                libc.munmap(addr, length)
        return (size if resident == checked else int(size * resident / checked)), size
    finally:
        os.close(fd)


def _resident_fraction(paths: Iterable[str]) -> float | None:
    resident = total = 0
    for real in paths:
        r = resident_bytes(real)
        if r is None:
            return None
        resident += r[0]
        total += r[1]
    return resident / total if total else None

