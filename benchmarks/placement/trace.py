"""Reading the Alibaba GPU trace (cluster-trace-gpu-v2023, the FGD paper's openb files).

Node list `openb_node_list_gpu_node.csv`: sn, cpu_milli, memory_mib, gpu, model.
Pod lists `openb_pod_list_*.csv`: name, cpu_milli, memory_mib, num_gpu, gpu_milli and
optionally gpu_spec ('V100M16|V100M32': the GPU models the pod accepts) and
creation_time (the replay order; other columns are ignored).

Everything is checked once, here; a bad file raises `BenchInputError` naming the file,
the line and the column, which the CLI prints as one line. Pods out of creation order
are replayed sorted (stable) by creation_time, as the paper replays them in creation
order; how many were out of order is reported with the results. A pod list without a
creation_time column (openb_pod_list_multigpu20.csv has none) is replayed in file
order, and the results say so.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.testbed.profiles import ALIBABA_GPU_MIB, alibaba_nodes_csv
from scheduler.cli import UserError

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
MAX_GPUS_PER_NODE = 64
MILLI = 1000  # gpu_milli of one whole GPU


class BenchInputError(UserError):
    """A trace file the benchmark cannot replay; the message names the file and row."""


def traces_dir() -> Path:
    """The Alibaba trace directory, found as the test bed's profiles find it
    (benchmarks/traces.py)."""
    return alibaba_nodes_csv().parent


def default_nodes_csv() -> Path:
    return alibaba_nodes_csv()


def default_pods_csv() -> Path:
    return traces_dir() / "openb_pod_list_default.csv"


def pod_list_variants() -> list[Path]:
    """Every openb_pod_list_*.csv beside the node list, default first, then by name."""
    found = sorted(traces_dir().glob("openb_pod_list_*.csv"))
    return sorted(found, key=lambda p: (p.name != default_pods_csv().name, p.name))


@dataclass(frozen=True)
class Nodes:
    path: str
    names: tuple[str, ...]
    cpu_milli: np.ndarray  # [N] int64
    memory_mib: np.ndarray  # [N] int64
    gpus: np.ndarray  # [N] int64
    model: tuple[str, ...]  # trace GPU model per node (a key of ALIBABA_GPU_MIB)

    def __len__(self) -> int:
        return len(self.names)

    def head(self, n: int) -> "Nodes":
        return Nodes(self.path, self.names[:n], self.cpu_milli[:n], self.memory_mib[:n], self.gpus[:n],
                     self.model[:n])


@dataclass(frozen=True)
class Pod:
    key: str  # unique: the pod's name
    line: int  # line in its CSV file
    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_milli: int  # per GPU; 1000 = whole
    gpu_spec: frozenset[str]  # accepted trace GPU models; empty = any

    @property
    def kind(self) -> str:
        if self.num_gpu == 0:
            return "cpu"
        return "share" if self.gpu_milli < MILLI else "whole"

    @property
    def demand_milli(self) -> int:
        """GPU capacity asked for, in milli-GPUs (whole GPUs count 1000 each)."""
        return self.num_gpu * self.gpu_milli


@dataclass(frozen=True)
class Pods:
    path: str
    pods: tuple[Pod, ...]  # in replay order
    ordered_by: str  # "creation_time order" or "file order (no creation_time column)"
    out_of_order: int  # pods whose creation_time was earlier than a previous row's

    def __len__(self) -> int:
        return len(self.pods)

    @property
    def name(self) -> str:
        return Path(self.path).stem

    def head(self, n: int) -> "Pods":
        return Pods(self.path, self.pods[:n], self.ordered_by, self.out_of_order)


def _rows(path: Path, required: tuple[str, ...], what: str):
    """(header index, iterator of (line, row)) after checking the header."""
    try:
        f = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise BenchInputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise BenchInputError(f"{path} line 1: unreadable header ({exc})") from None
        if header is None or not any(h.strip() for h in header):
            raise BenchInputError(f"{path}: empty file; expected a {what} with a header row "
                                  f"({','.join(required)})")
        header = [h.strip() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise BenchInputError(f"{path} line 1 (header): missing column{'s' if len(missing) > 1 else ''} "
                                  f"{', '.join(missing)}; a {what} needs {','.join(required)}")
        index = {h: i for i, h in enumerate(header)}
        rows = []
        try:
            for row in reader:
                if not row or not any(c.strip() for c in row):
                    continue  # blank lines
                if len(row) < len(header):
                    raise BenchInputError(f"{path} line {reader.line_num}: {len(row)} fields, the header has "
                                          f"{len(header)}")
                rows.append((reader.line_num, row))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise BenchInputError(f"{path} line {reader.line_num + 1}: unreadable row ({exc})") from None
        if not rows:
            raise BenchInputError(f"{path}: no data rows after the header; the {what} is empty")
        return index, rows


def _whole(path: Path, line: int, col: str, text: str, lo: int = 0, hi: int | None = None) -> int:
    s = text.strip()
    try:
        v = int(s)
    except ValueError:
        raise BenchInputError(f"{path} line {line}: {col} {s[:40]!r} is not a whole number") from None
    if v < lo:
        what = "negative" if v < 0 else f"below {lo}"
        raise BenchInputError(f"{path} line {line}: {col} is {what} ({v})")
    if hi is not None and v > hi:
        raise BenchInputError(f"{path} line {line}: {col} {v} is more than {hi}")
    return v


def read_nodes(path: Path | str | None = None) -> Nodes:
    path = Path(path) if path else default_nodes_csv()
    idx, rows = _rows(path, NODE_COLUMNS, "node list")
    names: list[str] = []
    seen: dict[str, int] = {}
    cpu, mem, gpus, models = [], [], [], []
    for line, row in rows:
        name = row[idx["sn"]].strip()
        if not name:
            raise BenchInputError(f"{path} line {line}: sn is empty")
        if name in seen:
            raise BenchInputError(f"{path} line {line}: node {name!r} repeated (first on line {seen[name]})")
        seen[name] = line
        model = row[idx["model"]].strip()
        if model not in ALIBABA_GPU_MIB:
            raise BenchInputError(f"{path} line {line}: GPU model {model[:40]!r} unknown; known: "
                                  f"{', '.join(sorted(ALIBABA_GPU_MIB))}")
        names.append(name)
        cpu.append(_whole(path, line, "cpu_milli", row[idx["cpu_milli"]]))
        mem.append(_whole(path, line, "memory_mib", row[idx["memory_mib"]]))
        gpus.append(_whole(path, line, "gpu", row[idx["gpu"]], 0, MAX_GPUS_PER_NODE))
        models.append(model)
    return Nodes(str(path), tuple(names), np.array(cpu, np.int64), np.array(mem, np.int64),
                 np.array(gpus, np.int64), tuple(models))


def _spec(path: Path, line: int, text: str) -> frozenset[str]:
    parts = [p.strip() for p in text.split("|")] if text.strip() else []
    for p in parts:
        if p not in ALIBABA_GPU_MIB:
            raise BenchInputError(f"{path} line {line}: gpu_spec names unknown GPU model {p[:40]!r}; known: "
                                  f"{', '.join(sorted(ALIBABA_GPU_MIB))}")
    return frozenset(parts)


def read_pods(path: Path | str | None = None) -> Pods:
    path = Path(path) if path else default_pods_csv()
    idx, rows = _rows(path, POD_COLUMNS, "pod list")
    has_time = "creation_time" in idx
    seen: dict[str, int] = {}
    pods: list[Pod] = []
    times: list[float] = []
    for line, row in rows:
        name = row[idx["name"]].strip()
        if not name:
            raise BenchInputError(f"{path} line {line}: name is empty")
        if name in seen:
            raise BenchInputError(f"{path} line {line}: pod {name!r} repeated (first on line {seen[name]})")
        seen[name] = line
        cpu = _whole(path, line, "cpu_milli", row[idx["cpu_milli"]])
        mem = _whole(path, line, "memory_mib", row[idx["memory_mib"]])
        num = _whole(path, line, "num_gpu", row[idx["num_gpu"]], 0, MAX_GPUS_PER_NODE)
        milli = _whole(path, line, "gpu_milli", row[idx["gpu_milli"]], 0, MILLI)
        if num == 0 and milli:
            raise BenchInputError(f"{path} line {line}: gpu_milli {milli} with num_gpu 0; a GPU share needs num_gpu 1")
        if num and not milli:
            raise BenchInputError(f"{path} line {line}: num_gpu {num} with gpu_milli 0; give the share of each GPU "
                                  "(1000 = whole)")
        if num > 1 and milli < MILLI:
            raise BenchInputError(f"{path} line {line}: num_gpu {num} with gpu_milli {milli}; shares are of one GPU, "
                                  "several GPUs are whole (gpu_milli 1000)")
        spec = _spec(path, line, row[idx["gpu_spec"]]) if "gpu_spec" in idx else frozenset()
        if has_time:
            text = row[idx["creation_time"]].strip()
            try:
                t = float(text)
            except ValueError:
                t = math.nan
            if not math.isfinite(t):
                raise BenchInputError(f"{path} line {line}: creation_time {text[:40]!r} is not a number")
            times.append(t)
        pods.append(Pod(name, line, cpu, mem, num, milli, spec))
    if has_time:
        t = np.array(times)
        out_of_order = int((t < np.maximum.accumulate(t)).sum())
        order = np.argsort(t, kind="stable")
        pods = [pods[i] for i in order]
        ordered_by = "creation_time order"
    else:
        out_of_order = 0
        ordered_by = "file order (no creation_time column)"
    return Pods(str(path), tuple(pods), ordered_by, out_of_order)
