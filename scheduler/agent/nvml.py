"""GPU inventory through NVML, as plain data. The only module that imports pynvml.

The seam is the NVML function surface itself: `GPUReader` calls a small set of
pynvml functions (listed in `CALLS`) on an object that is either the real `pynvml`
module or a `RecordedNVML` replaying readings from a JSON file. The code that runs
on a GPU node is the code the tests run; only the library underneath differs.

Memory follows nvidia-smi: `nvmlDeviceGetMemoryInfo(h, version=nvmlMemory_v2)`
reports the driver's reservation apart from `used` (about 480 MiB on an H100 with
driver 580), so `memory_used` is what nvidia-smi shows. Where v2 is missing (old
driver or old nvidia-ml-py) the v1 figures are used as they are and
`memory_source == "v1"` says that `used` then includes the reservation.

Every per-field NVML error leaves that field None: NotSupported silently, anything
else also listed in `GPUInfo.errors`. `NVMLError_GpuIsLost` (or ResetRequired)
marks the GPU lost and unhealthy and stops asking it further questions this read.

Recording format (`gpusched-nvml-recording/1`, see tests/scheduler/agent/data/):

    {"format": "gpusched-nvml-recording/1", "meta": {...free text...},
     "nvmlInit": <null or error>,
     "frames": [ {"nvmlSystemGetDriverVersion": "580.159.04",
                  "nvmlDeviceGetCount": 8,
                  "devices": [ {"nvmlDeviceGetHandleByIndex": null,
                                "nvmlDeviceGetName": "NVIDIA H100 80GB HBM3", ...}, ...],
                  "xid_events": [{"index": 3, "xid": 79}]}, ...]}

Each value is what the pynvml call returned (structs as objects of their fields)
or `{"nvml_error": "GPU_IS_LOST"}` (the NVML_ERROR_* suffix) for a call that
raised. A call missing from a device raises NotSupported. Frame k answers the
k-th read (the k-th `nvmlDeviceGetCount` call); the last frame repeats.
`record()` writes this format from a real GPU node:
`python -m scheduler.agent.nvml record > node.json`.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any

try:  # nvidia-ml-py is pure Python (ctypes): importable without a driver
    import pynvml as _pynvml
except ImportError:  # pragma: no cover - it is a declared dependency
    _pynvml = None

log = logging.getLogger(__name__)

RECORDING_FORMAT = "gpusched-nvml-recording/1"

# The whole NVML surface the reader uses; RecordedNVML answers exactly these.
CALLS = (
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetName",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetPciInfo",
    "nvmlDeviceGetMemoryInfo_v2",  # nvmlDeviceGetMemoryInfo(h, version=nvmlMemory_v2)
    "nvmlDeviceGetMemoryInfo",  # v1
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetTemperature",  # sensor NVML_TEMPERATURE_GPU
    "nvmlDeviceGetTotalEccErrors",  # uncorrected, volatile
    "nvmlDeviceGetRetiredPages",  # {"0": pages (multiple single-bit), "1": pages (double-bit)}
    "nvmlDeviceGetRemappedRows",  # [correctable, uncorrectable, pending, failure]
    "nvmlDeviceGetMigMode",  # [current, pending]
    "nvmlDeviceGetComputeRunningProcesses",  # [{"pid", "usedGpuMemory"}]
    "nvmlDeviceGetProcessUtilization",  # [{"pid", "timeStamp", "smUtil", "memUtil", ...}]; NOT_FOUND: none
)

# Errors that mean the GPU itself is gone until a reset; stop asking it anything.
_LOST = ("GPU_IS_LOST", "RESET_REQUIRED")
# XIDs caused by applications, not the GPU (NVIDIA's k8s-device-plugin skips the same).
APPLICATION_XIDS = frozenset({13, 31, 43, 45, 68, 109})


class NVMLUnavailable(RuntimeError):
    """No usable NVML here (library or driver missing, no permission); one line says why."""


@dataclass(frozen=True)
class GPUProcess:
    pid: int
    used_memory: int | None  # bytes; None where NVML does not tell (e.g. no permission)


@dataclass(frozen=True)
class GPUInfo:
    index: int
    uuid: str | None = None
    name: str | None = None
    pci_bus_id: str | None = None
    memory_total: int | None = None  # bytes, nvidia-smi "Total"
    memory_reserved: int | None = None  # bytes the driver reserves (v2 only)
    memory_used: int | None = None  # bytes, nvidia-smi "Used" (v2; v1 includes the reservation)
    memory_free: int | None = None  # bytes, nvidia-smi "Free"
    memory_source: str | None = None  # "v2" or "v1"
    utilization_gpu: float | None = None  # percent
    utilization_memory: float | None = None  # percent of time memory was read or written
    temperature_c: int | None = None
    ecc_uncorrected_volatile: int | None = None
    retired_pages: int | None = None  # both causes; None where the GPU uses row remapping instead
    remapped_rows_uncorrectable: int | None = None
    remap_pending: bool | None = None
    remap_failure: bool | None = None
    mig_mode: bool | None = None  # current MIG mode
    mig_mode_pending: bool | None = None
    processes: tuple[GPUProcess, ...] | None = None
    # (pid, SM percent) averaged over NVML's samples since the last read; () none, None not told
    process_utilization: tuple[tuple[int, float], ...] | None = None
    xids: tuple[int, ...] = ()  # critical XIDs seen since the reader opened
    lost: bool = False
    healthy: bool = True
    health_reasons: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # "field: NVML error" for errors other than NotSupported

    @property
    def memory_usable(self) -> int | None:
        """Bytes workloads can use: total minus the driver's reservation (= used + free)."""
        if self.memory_total is None:
            return None
        return self.memory_total - (self.memory_reserved or 0)


@dataclass(frozen=True)
class Inventory:
    available: bool  # NVML answered; False in no-GPU mode or when NVML failed this read
    gpus: tuple[GPUInfo, ...] = ()
    driver_version: str | None = None
    errors: tuple[str, ...] = ()  # whole-read problems (NVML unavailable, count failed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_ERROR_NAMES: dict[int, str] = {}


def _err_name(exc: BaseException) -> str:
    """NVML_ERROR_* suffix of a pynvml error ('GPU_IS_LOST'), or the class name."""
    if _pynvml is not None and not _ERROR_NAMES:
        for k in dir(_pynvml):
            if k.startswith("NVML_ERROR_") and isinstance(getattr(_pynvml, k), int):
                _ERROR_NAMES.setdefault(getattr(_pynvml, k), k[len("NVML_ERROR_"):])
    value = getattr(exc, "value", None)
    return _ERROR_NAMES.get(value, type(exc).__name__) if isinstance(value, int) else type(exc).__name__


def _is_nvml_error(exc: BaseException) -> bool:
    return _pynvml is not None and isinstance(exc, _pynvml.NVMLError)


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, (bytes, bytearray)) else str(v)


class GPUReader:
    """Reads all GPUs through `nvml` (the pynvml module, or a RecordedNVML).

    Stateful only where NVML is: it keeps NVML initialised between reads, an XID
    event set, and the critical XIDs seen (a GPU that raised one stays unhealthy
    until the agent restarts, as NVIDIA's device plugin does)."""

    def __init__(self, nvml: Any = None):
        self._nvml = nvml if nvml is not None else _pynvml
        self._open = False
        self._events = None
        self._registered: set[int] = set()  # GPU indices registered for XID events
        self._xids: dict[str, list[int]] = {}  # uuid -> critical XIDs
        self._last_sample: dict[int, int] = {}  # GPU index -> newest process sample's timestamp (us)

    def open(self) -> None:
        if self._open:
            return
        if self._nvml is None:
            raise NVMLUnavailable("nvidia-ml-py (pynvml) is not installed")
        try:
            self._nvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - any failure here means no GPUs for us
            if _is_nvml_error(exc):
                name = _err_name(exc)
                hint = {
                    "LIBRARY_NOT_FOUND": " (libnvidia-ml.so.1 not found: no NVIDIA driver, or the container "
                                         "was not started with the NVIDIA runtime)",
                    "DRIVER_NOT_LOADED": " (the NVIDIA kernel driver is not loaded)",
                    "NO_PERMISSION": " (no access to /dev/nvidia*)",
                }.get(name, "")
                raise NVMLUnavailable(f"NVML init failed: {exc}{hint}") from None
            raise NVMLUnavailable(f"NVML init failed: {type(exc).__name__}: {exc}") from None
        self._open = True
        self._create_event_set()

    def close(self) -> None:
        if not self._open:
            return
        try:
            if self._events is not None and hasattr(self._nvml, "nvmlEventSetFree"):
                self._nvml.nvmlEventSetFree(self._events)
            self._nvml.nvmlShutdown()
        except Exception as exc:  # noqa: BLE001
            log.debug("NVML shutdown: %s", exc)
        self._open = False
        self._events = None
        self._registered.clear()

    def __enter__(self) -> "GPUReader":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------

    def read(self) -> Inventory:
        """One inventory. Never raises for NVML errors: they end up in the result."""
        self.open()
        nv = self._nvml
        try:
            count = int(nv.nvmlDeviceGetCount())
        except Exception as exc:  # noqa: BLE001
            if not _is_nvml_error(exc):
                raise
            self.close()  # initialise afresh next read (the driver may have been reloaded)
            return Inventory(available=False, errors=(f"nvmlDeviceGetCount: {exc}",))
        driver = None
        try:
            driver = _text(nv.nvmlSystemGetDriverVersion())
        except Exception as exc:  # noqa: BLE001
            if not _is_nvml_error(exc):
                raise
        gpus = [self._read_one(i) for i in range(count)]
        self._drain_xids(gpus)
        gpus = [self._with_health(g) for g in gpus]
        return Inventory(available=True, gpus=tuple(gpus), driver_version=driver)

    def _read_one(self, index: int) -> GPUInfo:
        nv = self._nvml
        errors: list[str] = []
        lost = False
        values: dict[str, Any] = {"index": index}

        def call(what: str, fn_name: str, *args: Any, **kwargs: Any) -> Any:
            nonlocal lost
            if lost:
                return None
            fn = getattr(nv, fn_name, None)
            if fn is None:
                return None
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                if not _is_nvml_error(exc):
                    raise
                name = _err_name(exc)
                if name == "NOT_SUPPORTED":
                    return None
                errors.append(f"{what}: {exc}")
                if name in _LOST:
                    lost = True
                return None

        handle = call("handle", "nvmlDeviceGetHandleByIndex", index)
        if handle is None:
            if not errors:
                errors.append("handle: NVML returned none")
            return GPUInfo(index=index, lost=lost, errors=tuple(errors))
        h = handle
        self._register_xid_events(index, h)
        v = call("uuid", "nvmlDeviceGetUUID", h)
        values["uuid"] = _text(v) if v is not None else None
        v = call("name", "nvmlDeviceGetName", h)
        values["name"] = _text(v) if v is not None else None
        v = call("pci_bus_id", "nvmlDeviceGetPciInfo", h)
        if v is not None:
            values["pci_bus_id"] = _text(getattr(v, "busId", "")) or None

        mem = None
        v2 = getattr(nv, "nvmlMemory_v2", None)
        if v2 is not None:
            # v2 missing in an old driver raises FunctionNotFound: fall back to v1 quietly
            before = len(errors)
            mem = call("memory", "nvmlDeviceGetMemoryInfo", h, version=v2)
            if mem is None and not lost:
                del errors[before:]
        if mem is not None:
            values.update(memory_total=int(mem.total), memory_reserved=int(mem.reserved),
                          memory_used=int(mem.used), memory_free=int(mem.free), memory_source="v2")
        else:
            mem = call("memory", "nvmlDeviceGetMemoryInfo", h)
            if mem is not None:
                # v1 'used' includes the driver's reservation: nvidia-smi shows less.
                values.update(memory_total=int(mem.total), memory_used=int(mem.used),
                              memory_free=int(mem.free), memory_source="v1")

        v = call("utilization", "nvmlDeviceGetUtilizationRates", h)
        if v is not None:
            values["utilization_gpu"] = float(v.gpu)
            values["utilization_memory"] = float(v.memory)
        v = call("temperature", "nvmlDeviceGetTemperature", h, getattr(nv, "NVML_TEMPERATURE_GPU", 0))
        values["temperature_c"] = int(v) if v is not None else None
        v = call("ecc", "nvmlDeviceGetTotalEccErrors", h,
                 getattr(nv, "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", 1), getattr(nv, "NVML_VOLATILE_ECC", 0))
        values["ecc_uncorrected_volatile"] = int(v) if v is not None else None
        pages = None
        for cause in (getattr(nv, "NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS", 0),
                      getattr(nv, "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR", 1)):
            v = call("retired_pages", "nvmlDeviceGetRetiredPages", h, cause)
            if v is not None:
                pages = (pages or 0) + len(v)
        values["retired_pages"] = pages
        v = call("remapped_rows", "nvmlDeviceGetRemappedRows", h)
        if v is not None:
            _corr, unc, pending, failure = (int(x) for x in v)
            values.update(remapped_rows_uncorrectable=unc, remap_pending=bool(pending), remap_failure=bool(failure))
        v = call("mig_mode", "nvmlDeviceGetMigMode", h)
        if v is not None:
            values["mig_mode"] = bool(v[0])
            values["mig_mode_pending"] = bool(v[1])
        v = call("processes", "nvmlDeviceGetComputeRunningProcesses", h)
        if v is not None:
            procs = []
            for p in v:
                used = getattr(p, "usedGpuMemory", None)
                procs.append(GPUProcess(pid=int(p.pid), used_memory=int(used) if used is not None else None))
            values["processes"] = tuple(procs)
        if not lost and hasattr(nv, "nvmlDeviceGetProcessUtilization"):
            values["process_utilization"], lost = self._process_utilization(index, h, errors)
        return GPUInfo(lost=lost, errors=tuple(errors), **values)

    def _process_utilization(self, index: int, h: Any,
                             errors: list[str]) -> tuple[tuple[tuple[int, float], ...] | None, bool]:
        """SM share per process since the last read, and whether the GPU was lost meanwhile:
        NVML keeps a ring of samples and answers those newer than the timestamp given
        (NOT_FOUND: none, an idle GPU)."""
        try:
            samples = self._nvml.nvmlDeviceGetProcessUtilization(h, self._last_sample.get(index, 0))
        except Exception as exc:  # noqa: BLE001
            if not _is_nvml_error(exc):
                raise
            name = _err_name(exc)
            # pynvml raises NVMLError(NVML_SUCCESS) when the driver answers zero samples
            if name == "NOT_FOUND" or getattr(exc, "value", None) == getattr(_pynvml, "NVML_SUCCESS", 0):
                return (), False
            if name != "NOT_SUPPORTED":
                errors.append(f"process_utilization: {exc}")
            return None, name in _LOST
        by_pid: dict[int, list[float]] = {}
        newest = self._last_sample.get(index, 0)
        for s in samples or ():
            try:
                pid, sm, ts = int(s.pid), float(s.smUtil), int(s.timeStamp)
            except (AttributeError, TypeError, ValueError):
                continue
            if 0 <= sm <= 100:  # a stray sample is dropped, not exported
                by_pid.setdefault(pid, []).append(sm)
            newest = max(newest, ts)
        self._last_sample[index] = newest
        return tuple((pid, sum(v) / len(v)) for pid, v in sorted(by_pid.items())), False

    def _with_health(self, g: GPUInfo) -> GPUInfo:
        reasons = []
        if g.lost:
            reasons.append("GPU lost (NVML: " + "; ".join(g.errors) + ")" if g.errors else "GPU lost")
        if g.ecc_uncorrected_volatile:
            reasons.append(f"{g.ecc_uncorrected_volatile} uncorrected ECC errors since the driver loaded")
        if g.remap_failure:
            reasons.append("row remapping failed")
        if g.remap_pending:
            reasons.append("row remapping pending (needs a GPU reset)")
        xids = tuple(self._xids.get(g.uuid or "", ()))
        if xids:
            reasons.append("critical XID " + ",".join(str(x) for x in xids))
        return GPUInfo(**{**_fields(g), "xids": xids, "healthy": not reasons, "health_reasons": tuple(reasons)})

    # --- XID events (best effort: NotSupported in some containers and drivers) ---

    def _create_event_set(self) -> None:
        nv = self._nvml
        if not all(hasattr(nv, f) for f in ("nvmlEventSetCreate", "nvmlDeviceRegisterEvents", "nvmlEventSetWait_v2")):
            return
        try:
            self._events = nv.nvmlEventSetCreate()
        except Exception as exc:  # noqa: BLE001
            if not _is_nvml_error(exc):
                raise
            log.debug("XID events not available: %s", exc)

    def _register_xid_events(self, index: int, handle: Any) -> None:
        if self._events is None or index in self._registered:
            return
        self._registered.add(index)  # one try per GPU per NVML session
        try:
            self._nvml.nvmlDeviceRegisterEvents(handle, getattr(self._nvml, "nvmlEventTypeXidCriticalError", 8),
                                                self._events)
        except Exception as exc:  # noqa: BLE001
            if not _is_nvml_error(exc):
                raise
            log.debug("XID events not available for GPU %d: %s", index, exc)

    def _drain_xids(self, gpus: list[GPUInfo]) -> None:
        if self._events is None:
            return
        nv = self._nvml
        for _ in range(256):
            try:
                ev = nv.nvmlEventSetWait_v2(self._events, 0)
            except Exception as exc:  # noqa: BLE001 - Timeout: nothing pending
                if not _is_nvml_error(exc):
                    raise
                return
            xid = int(getattr(ev, "eventData", 0))
            if xid in APPLICATION_XIDS:
                continue
            try:
                uuid = _text(nv.nvmlDeviceGetUUID(ev.device))
            except Exception as exc:  # noqa: BLE001
                if not _is_nvml_error(exc):
                    raise
                uuid = ""
            log.warning("GPU %s: critical XID %d", uuid or "?", xid)
            self._xids.setdefault(uuid, []).append(xid)


def _fields(g: GPUInfo) -> dict[str, Any]:
    return {k: getattr(g, k) for k in g.__dataclass_fields__}


def read_gpus(nvml: Any = None) -> Inventory:
    """Read all GPUs once. Raises NVMLUnavailable where there is no usable NVML."""
    with GPUReader(nvml) as reader:
        return reader.read()


# --- recordings ------------------------------------------------------------------


class RecordedNVML:
    """Answers the pynvml calls in CALLS from a recording (see the module docstring).

    Errors are raised as the real pynvml exception classes (NVMLError_GpuIsLost ...),
    so the reader's error handling is the one that runs on GPU nodes."""

    nvmlMemory_v2 = getattr(_pynvml, "nvmlMemory_v2", 0x02000028)
    NVML_TEMPERATURE_GPU = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS = 0
    NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 1
    nvmlEventTypeXidCriticalError = 8

    def __init__(self, recording: dict[str, Any]):
        if _pynvml is None:  # pragma: no cover
            raise NVMLUnavailable("nvidia-ml-py (pynvml) is not installed")
        if recording.get("format") != RECORDING_FORMAT:
            raise ValueError(f"not an NVML recording: format is {recording.get('format')!r}, "
                             f"expected {RECORDING_FORMAT!r}")
        frames = recording.get("frames")
        if not isinstance(frames, list) or not frames:
            raise ValueError("NVML recording has no frames")
        self.recording = recording
        self.frames = frames
        self.reads = 0  # nvmlDeviceGetCount calls so far
        self._frame = frames[0]
        self._pending_xids: list[dict[str, Any]] = []
        self.initialised = False

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "RecordedNVML":
        try:
            with open(path, encoding="utf-8") as f:
                return cls(json.load(f))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot load NVML recording {os.fspath(path)!r}: {exc}") from None

    # -- helpers
    @staticmethod
    def _raise(value: Any) -> None:
        if isinstance(value, dict) and "nvml_error" in value:
            name = str(value["nvml_error"])
            code = getattr(_pynvml, "NVML_SUCCESS" if name == "SUCCESS" else "NVML_ERROR_" + name, None)
            raise _pynvml.NVMLError(code if code is not None else _pynvml.NVML_ERROR_UNKNOWN)

    def _answer(self, value: Any) -> Any:
        self._raise(value)
        return _obj(value)

    def _check_init(self) -> None:
        if not self.initialised:
            raise _pynvml.NVMLError(_pynvml.NVML_ERROR_UNINITIALIZED)

    def _device(self, handle: Any) -> dict[str, Any]:
        devices = self._frame.get("devices", [])
        if not isinstance(handle, int) or not 0 <= handle < len(devices):
            raise _pynvml.NVMLError(_pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return devices[handle]

    def _dev_call(self, handle: Any, key: str) -> Any:
        self._check_init()
        dev = self._device(handle)
        if key not in dev:
            raise _pynvml.NVMLError(_pynvml.NVML_ERROR_NOT_SUPPORTED)
        return self._answer(dev[key])

    # -- the pynvml surface
    def nvmlInit(self) -> None:
        self._raise(self.recording.get("nvmlInit"))
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check_init()
        return self._answer(self._frame.get("nvmlSystemGetDriverVersion", {"nvml_error": "NOT_SUPPORTED"}))

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        self._frame = self.frames[min(self.reads, len(self.frames) - 1)]
        self.reads += 1
        self._pending_xids = list(self._frame.get("xid_events", []))
        return self._answer(self._frame.get("nvmlDeviceGetCount", len(self._frame.get("devices", []))))

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        dev = self._device(index)
        self._check_init()
        if "nvmlDeviceGetHandleByIndex" in dev:
            self._raise(dev["nvmlDeviceGetHandleByIndex"])
        return index

    def nvmlDeviceGetName(self, h: int) -> str:
        return self._dev_call(h, "nvmlDeviceGetName")

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return self._dev_call(h, "nvmlDeviceGetUUID")

    def nvmlDeviceGetPciInfo(self, h: int) -> Any:
        return self._dev_call(h, "nvmlDeviceGetPciInfo")

    def nvmlDeviceGetMemoryInfo(self, h: int, version: Any = None) -> Any:
        return self._dev_call(h, "nvmlDeviceGetMemoryInfo_v2" if version else "nvmlDeviceGetMemoryInfo")

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return self._dev_call(h, "nvmlDeviceGetUtilizationRates")

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return self._dev_call(h, "nvmlDeviceGetTemperature")

    def nvmlDeviceGetTotalEccErrors(self, h: int, error_type: int, counter_type: int) -> int:
        return self._dev_call(h, "nvmlDeviceGetTotalEccErrors")

    def nvmlDeviceGetRetiredPages(self, h: int, cause: int) -> list[int]:
        v = self._dev_call(h, "nvmlDeviceGetRetiredPages")
        return list(getattr(v, str(cause), None) or []) if isinstance(v, SimpleNamespace) else list(v or [])

    def nvmlDeviceGetRemappedRows(self, h: int) -> tuple[int, int, int, int]:
        return tuple(self._dev_call(h, "nvmlDeviceGetRemappedRows"))

    def nvmlDeviceGetMigMode(self, h: int) -> list[int]:
        return list(self._dev_call(h, "nvmlDeviceGetMigMode"))

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return list(self._dev_call(h, "nvmlDeviceGetComputeRunningProcesses"))

    def nvmlDeviceGetProcessUtilization(self, h: int, last_seen: int) -> list[Any]:
        samples = self._dev_call(h, "nvmlDeviceGetProcessUtilization")
        return [x for x in samples if int(getattr(x, "timeStamp", 0)) > int(last_seen)]

    def nvmlEventSetCreate(self) -> str:
        self._check_init()
        return "recorded-event-set"

    def nvmlDeviceRegisterEvents(self, h: int, types: int, event_set: Any) -> None:
        self._device(h)

    def nvmlEventSetWait_v2(self, event_set: Any, timeout_ms: int) -> Any:
        if not self._pending_xids:
            raise _pynvml.NVMLError(_pynvml.NVML_ERROR_TIMEOUT)
        e = self._pending_xids.pop(0)
        return SimpleNamespace(device=int(e["index"]), eventType=8, eventData=int(e["xid"]))

    def nvmlEventSetFree(self, event_set: Any) -> None:
        pass


def _obj(v: Any) -> Any:
    if isinstance(v, dict):
        return SimpleNamespace(**{k: _obj(x) for k, x in v.items()})
    if isinstance(v, list):
        return [_obj(x) for x in v]
    return v


def _plain(v: Any) -> Any:
    """A pynvml return value as JSON-able data (structs as dicts of their fields)."""
    if isinstance(v, (bytes, bytearray)):
        return v.decode(errors="replace")
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    fields = getattr(v, "_fields_", None)
    if fields is not None:
        return {name: _plain(getattr(v, name)) for name, *_ in fields}
    if hasattr(v, "__dict__") and not isinstance(v, (int, float, str)):
        return {k: _plain(x) for k, x in vars(v).items() if not k.startswith("_")}
    return v


def record(nvml: Any = None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """One frame of readings from a real GPU node, in the recording format."""
    nv = nvml if nvml is not None else _pynvml
    if nv is None:
        raise NVMLUnavailable("nvidia-ml-py (pynvml) is not installed")

    def grab(fn: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return _plain(getattr(nv, fn)(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001
            if not _is_nvml_error(exc):
                raise
            return {"nvml_error": _err_name(exc)}

    nv.nvmlInit()
    try:
        frame: dict[str, Any] = {"nvmlSystemGetDriverVersion": grab("nvmlSystemGetDriverVersion")}
        count = int(nv.nvmlDeviceGetCount())
        frame["nvmlDeviceGetCount"] = count
        devices = []
        for i in range(count):
            dev: dict[str, Any] = {}
            try:
                h = nv.nvmlDeviceGetHandleByIndex(i)
            except Exception as exc:  # noqa: BLE001
                if not _is_nvml_error(exc):
                    raise
                devices.append({"nvmlDeviceGetHandleByIndex": {"nvml_error": _err_name(exc)}})
                continue
            for fn in ("nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetMemoryInfo",
                       "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetRemappedRows", "nvmlDeviceGetMigMode"):
                dev[fn] = grab(fn, h)
            pci = grab("nvmlDeviceGetPciInfo", h)
            dev["nvmlDeviceGetPciInfo"] = ({"busId": pci["busId"]} if isinstance(pci, dict) and "busId" in pci else pci)
            if getattr(nv, "nvmlMemory_v2", None) is not None:
                dev["nvmlDeviceGetMemoryInfo_v2"] = grab("nvmlDeviceGetMemoryInfo", h, version=nv.nvmlMemory_v2)
            dev["nvmlDeviceGetTemperature"] = grab("nvmlDeviceGetTemperature", h, nv.NVML_TEMPERATURE_GPU)
            dev["nvmlDeviceGetTotalEccErrors"] = grab("nvmlDeviceGetTotalEccErrors", h,
                                                      nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC)
            pages = {str(c): grab("nvmlDeviceGetRetiredPages", h, c) for c in (0, 1)}
            err = next((p for p in pages.values() if isinstance(p, dict)), None)
            dev["nvmlDeviceGetRetiredPages"] = err if err is not None else pages
            procs = grab("nvmlDeviceGetComputeRunningProcesses", h)
            dev["nvmlDeviceGetComputeRunningProcesses"] = (
                [{"pid": p["pid"], "usedGpuMemory": p.get("usedGpuMemory")} for p in procs]
                if isinstance(procs, list) else procs)
            util = grab("nvmlDeviceGetProcessUtilization", h, 0)
            dev["nvmlDeviceGetProcessUtilization"] = (
                [{"pid": u["pid"], "timeStamp": u["timeStamp"], "smUtil": u["smUtil"], "memUtil": u["memUtil"]}
                 for u in util] if isinstance(util, list) else util)
            devices.append(dev)
        frame["devices"] = devices
    finally:
        nv.nvmlShutdown()
    return {"format": RECORDING_FORMAT, "meta": meta or {}, "frames": [frame]}


def main(argv: list[str] | None = None) -> int:
    """`python -m scheduler.agent.nvml record [NOTE]`: print a recording of this node's GPUs."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "record":
        print("usage: python -m scheduler.agent.nvml record [note] > recording.json", file=sys.stderr)
        return 2
    try:
        rec = record(meta={"note": " ".join(argv[1:])} if len(argv) > 1 else None)
    except NVMLUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001
        if _is_nvml_error(exc):
            print(f"error: NVML: {exc}", file=sys.stderr)
            return 1
        raise
    json.dump(rec, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
