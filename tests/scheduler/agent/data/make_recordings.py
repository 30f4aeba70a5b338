"""Writes the NVML recordings in this folder (run it from anywhere; output is deterministic).

They are synthesised from figures measured on a lent H100 (docs/design.md, "Facts measured
here": driver 580.159.04; a PyTorch process holding a 10 GiB tensor; NVML v1 said
used = 11,247 MiB, nvidia-smi 10,767 MiB; the driver reserves 480 MiB), laid out
as `python -m scheduler.agent.nvml record` writes them. Replace them with a raw
recording from a GPU node when one is at hand.
"""
import copy
import json
import pathlib

MiB = 2**20
TOTAL = 81559 * MiB  # H100 80GB HBM3, as nvidia-smi shows "81559MiB"
RESERVED = 480 * MiB
BUS_IDS = ["00000000:18:00.0", "00000000:2A:00.0", "00000000:3A:00.0", "00000000:5D:00.0",
           "00000000:9A:00.0", "00000000:AB:00.0", "00000000:BA:00.0", "00000000:DB:00.0"]
UUIDS = [f"GPU-5a1c{i:02x}e2-7d3b-4c1f-9e0a-{0x3f6b2c81d400 + i * 0x1011:012x}" for i in range(8)]
LOST = {"nvml_error": "GPU_IS_LOST"}


def device(i, used_mib=0, procs=(), util=0, temp=31, samples=None):
    used = used_mib * MiB
    return {
        "nvmlDeviceGetName": "NVIDIA H100 80GB HBM3",
        "nvmlDeviceGetUUID": UUIDS[i],
        "nvmlDeviceGetPciInfo": {"busId": BUS_IDS[i]},
        "nvmlDeviceGetMemoryInfo_v2": {"version": 0x02000028, "total": TOTAL, "reserved": RESERVED,
                                       "free": TOTAL - RESERVED - used, "used": used},
        "nvmlDeviceGetMemoryInfo": {"total": TOTAL, "free": TOTAL - RESERVED - used, "used": used + RESERVED},
        "nvmlDeviceGetUtilizationRates": {"gpu": util, "memory": 0},
        "nvmlDeviceGetTemperature": temp,
        "nvmlDeviceGetTotalEccErrors": 0,
        "nvmlDeviceGetRetiredPages": {"nvml_error": "NOT_SUPPORTED"},  # Hopper uses row remapping
        "nvmlDeviceGetRemappedRows": [0, 0, 0, 0],
        "nvmlDeviceGetMigMode": [0, 0],
        "nvmlDeviceGetComputeRunningProcesses": [{"pid": p, "usedGpuMemory": m * MiB} for p, m in procs],
        # NOT_FOUND: no process sample since the timestamp asked (an idle GPU answers so)
        "nvmlDeviceGetProcessUtilization": (
            [{"pid": p, "timeStamp": ts, "smUtil": sm, "memUtil": mu, "encUtil": 0, "decUtil": 0}
             for p, ts, sm, mu in samples] if samples else {"nvml_error": "NOT_FOUND"}),
    }


def frame(devices, xids=()):
    return {"nvmlSystemGetDriverVersion": "580.159.04", "nvmlDeviceGetCount": len(devices),
            "devices": devices, "xid_events": list(xids)}


h100 = {
    "format": "gpusched-nvml-recording/1",
    "meta": {
        "node": "8x NVIDIA H100 80GB HBM3 (HGX), driver 580.159.04",
        "source": "synthesised from measured figures (tests/scheduler/agent/data/make_recordings.py)",
        "scenario": "GPU 0: one PyTorch process (pid 41237) holding a 10 GiB tensor; GPUs 1-7 idle",
        "nvidia_smi": {"0": {"memory.total": "81559 MiB", "memory.used": "10767 MiB",
                             "memory.reserved": "480 MiB", "memory.free": "70312 MiB"},
                       "1": {"memory.total": "81559 MiB", "memory.used": "0 MiB"}},
    },
    "frames": [frame([device(0, 10767, [(41237, 10758)], util=3, temp=36)] + [device(i, temp=30 + i % 3) for i in range(1, 8)])],
}

healthy = [device(i, temp=30 + i % 3) for i in range(8)]
half_lost = copy.deepcopy(healthy)
# GPU 3 falls off the bus between reads: cached identity still answers, then every
# query raises NVMLError_GpuIsLost (XID 79 arrives on the event set).
for k in list(half_lost[3]):
    if k not in ("nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetPciInfo"):
        half_lost[3][k] = LOST
gone = copy.deepcopy(healthy)
gone[3] = {"nvmlDeviceGetHandleByIndex": LOST}
lost = {
    "format": "gpusched-nvml-recording/1",
    "meta": {
        "node": "8x NVIDIA H100 80GB HBM3 (HGX), driver 580.159.04",
        "source": "synthesised (tests/scheduler/agent/data/make_recordings.py)",
        "scenario": "read 1: all healthy; read 2: GPU 3 answers name/UUID/PCI then raises GPU_IS_LOST "
                    "(XID 79); read 3 and later: nvmlDeviceGetHandleByIndex(3) raises GPU_IS_LOST",
    },
    "frames": [frame(healthy), frame(half_lost, [{"index": 3, "xid": 79}]), frame(gone)],
}

# GPU 0 shared by two pods through gpusched (gpusched.io/gpu-memory alone, no nvidia.com/gpu):
# pod A (pid 5101, 30 GiB) and pod B (pids 5202 and 5203, 20 + 1 GiB); a host process
# (pid 777, 512 MiB) too. GPU 1 is held whole by pod C (pid 6301). NVML keeps several samples
# per process: SM shares since the last read average to A 40 %, B 15 + 5 %, C 90 %.
T0 = 1_764_990_000_000_000  # microseconds, as NVML stamps samples
shared = {
    "format": "gpusched-nvml-recording/1",
    "meta": {
        "node": "8x NVIDIA H100 80GB HBM3 (HGX), driver 580.159.04",
        "source": "synthesised (tests/scheduler/agent/data/make_recordings.py)",
        "scenario": "GPU 0: share pods A (pid 5101) and B (pids 5202, 5203) and host pid 777; "
                    "GPU 1: whole-GPU pod C (pid 6301); GPUs 2-7 idle (process samples NOT_FOUND)",
    },
    "frames": [frame(
        [device(0, 30720 + 20480 + 1024 + 512, [(5101, 30720), (5202, 20480), (5203, 1024), (777, 512)], util=60,
                samples=[(5101, T0 + 100_000, 35, 20), (5101, T0 + 1_100_000, 45, 22),
                         (5202, T0 + 600_000, 15, 9), (5203, T0 + 700_000, 5, 1), (777, T0 + 800_000, 0, 0)]),
         device(1, 72000, [(6301, 72000)], util=90, samples=[(6301, T0 + 900_000, 90, 40)])]
        + [device(i, temp=30 + i % 3) for i in range(2, 8)])],
}

here = pathlib.Path(__file__).parent
for name, rec in (("nvml-8xh100-10gib.json", h100), ("nvml-8xh100-gpu-lost.json", lost),
                  ("nvml-8xh100-shared.json", shared)):
    (here / name).write_text(json.dumps(rec, indent=1) + "\n")
