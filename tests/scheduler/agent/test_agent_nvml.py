"""NVML inventory against recorded readings (no GPU needed), GPU lost mid-run, no NVML."""
from __future__ import annotations

import copy
import json
import pathlib

import pytest

from scheduler.agent import nvml
from scheduler.agent.nvml import GPUReader, NVMLUnavailable, RecordedNVML, read_gpus

DATA = pathlib.Path(__file__).parent / "data"
MiB = 2**20
H100 = DATA / "nvml-8xh100-10gib.json"
LOST = DATA / "nvml-8xh100-gpu-lost.json"


def load(path: pathlib.Path) -> dict:
    return json.loads(path.read_text())


def smi_mib(text: str) -> int:
    assert text.endswith(" MiB")
    return int(text[:-4])


def test_h100_memory_matches_nvidia_smi():
    rec = load(H100)
    inv = read_gpus(RecordedNVML(rec))
    assert inv.available and inv.driver_version == "580.159.04"
    assert len(inv.gpus) == 8
    assert len({g.uuid for g in inv.gpus}) == 8
    assert {g.name for g in inv.gpus} == {"NVIDIA H100 80GB HBM3"}
    g0 = inv.gpus[0]
    smi = rec["meta"]["nvidia_smi"]["0"]
    # v2: 'used' excludes the driver's 480 MiB reservation, exactly what nvidia-smi shows
    assert g0.memory_source == "v2"
    assert g0.memory_used // MiB == smi_mib(smi["memory.used"]) == 10767
    assert g0.memory_total // MiB == smi_mib(smi["memory.total"]) == 81559
    assert g0.memory_reserved // MiB == smi_mib(smi["memory.reserved"]) == 480
    assert g0.memory_free // MiB == smi_mib(smi["memory.free"]) == 81559 - 480 - 10767
    assert g0.memory_usable // MiB == 81559 - 480
    assert g0.processes == (nvml.GPUProcess(pid=41237, used_memory=10758 * MiB),)
    assert g0.pci_bus_id == "00000000:18:00.0"
    assert (g0.utilization_gpu, g0.temperature_c, g0.mig_mode) == (3.0, 36, False)
    assert g0.ecc_uncorrected_volatile == 0 and g0.remap_failure is False and g0.remap_pending is False
    assert g0.retired_pages is None  # NotSupported on Hopper (row remapping instead): None, not an error
    assert g0.healthy and g0.errors == ()
    g1 = inv.gpus[1]
    assert g1.memory_used == 0 and g1.processes == ()


def test_v1_fallback_is_labelled_and_includes_the_reservation():
    class OldPynvml(RecordedNVML):
        nvmlMemory_v2 = None  # an nvidia-ml-py that predates nvmlMemory_v2

    g0 = read_gpus(OldPynvml(load(H100))).gpus[0]
    assert g0.memory_source == "v1"
    assert g0.memory_used // MiB == 11247  # what v1 said on the H100: 10,767 + 480 reserved
    assert g0.memory_reserved is None and g0.memory_usable == g0.memory_total


def test_v2_missing_in_the_driver_falls_back_to_v1_without_an_error():
    rec = load(H100)
    for dev in rec["frames"][0]["devices"]:
        dev["nvmlDeviceGetMemoryInfo_v2"] = {"nvml_error": "FUNCTION_NOT_FOUND"}
    g0 = read_gpus(RecordedNVML(rec)).gpus[0]
    assert g0.memory_source == "v1" and g0.errors == ()


@pytest.mark.parametrize("call, error, field, reported", [
    ("nvmlDeviceGetUtilizationRates", "NOT_SUPPORTED", "utilization_gpu", False),
    ("nvmlDeviceGetTemperature", "NOT_SUPPORTED", "temperature_c", False),
    ("nvmlDeviceGetTotalEccErrors", "NOT_SUPPORTED", "ecc_uncorrected_volatile", False),
    ("nvmlDeviceGetMigMode", "NOT_SUPPORTED", "mig_mode", False),
    ("nvmlDeviceGetRemappedRows", "NOT_SUPPORTED", "remap_failure", False),
    ("nvmlDeviceGetComputeRunningProcesses", "NO_PERMISSION", "processes", True),
    ("nvmlDeviceGetPciInfo", "UNKNOWN", "pci_bus_id", True),
    ("nvmlDeviceGetUUID", "TIMEOUT", "uuid", True),
])
def test_a_failing_call_leaves_its_field_none(call, error, field, reported):
    rec = load(H100)
    rec["frames"][0]["devices"][0][call] = {"nvml_error": error}
    g0 = read_gpus(RecordedNVML(rec)).gpus[0]
    assert getattr(g0, field) is None
    assert bool(g0.errors) is reported  # NotSupported is normal; anything else is worth saying
    assert g0.memory_used // MiB == 10767  # the rest still answers
    assert g0.healthy and not g0.lost


def test_call_missing_from_recording_reads_as_not_supported():
    rec = load(H100)
    del rec["frames"][0]["devices"][2]["nvmlDeviceGetTemperature"]
    g2 = read_gpus(RecordedNVML(rec)).gpus[2]
    assert g2.temperature_c is None and g2.errors == ()


@pytest.mark.parametrize("change, reason", [
    ({"nvmlDeviceGetTotalEccErrors": 2}, "2 uncorrected ECC errors"),
    ({"nvmlDeviceGetRemappedRows": [0, 1, 0, 1]}, "row remapping failed"),
    ({"nvmlDeviceGetRemappedRows": [0, 1, 1, 0]}, "row remapping pending"),
])
def test_health_from_ecc_and_row_remapping(change, reason):
    rec = load(H100)
    rec["frames"][0]["devices"][5].update(change)
    inv = read_gpus(RecordedNVML(rec))
    g5 = inv.gpus[5]
    assert not g5.healthy and not g5.lost
    assert any(reason in r for r in g5.health_reasons)
    assert all(g.healthy for g in inv.gpus if g.index != 5)


def test_gpu_lost_mid_run():
    reader = GPUReader(RecordedNVML.load(LOST))
    with reader:
        first = reader.read()
        assert all(g.healthy for g in first.gpus) and len(first.gpus) == 8

        second = reader.read()  # GPU 3 answers its identity, then every call raises GPU_IS_LOST
        g3 = second.gpus[3]
        assert g3.lost and not g3.healthy
        assert g3.uuid == first.gpus[3].uuid and g3.name == "NVIDIA H100 80GB HBM3"
        assert g3.memory_total is None and g3.utilization_gpu is None and g3.processes is None
        assert g3.errors == ("memory: GPU is lost",)  # asked once, then left alone
        assert g3.xids == (79,)
        assert any("GPU lost" in r for r in g3.health_reasons)
        assert any("XID 79" in r for r in g3.health_reasons)
        assert all(g.healthy for g in second.gpus if g.index != 3)

        third = reader.read()  # now even the handle is gone
        g3 = third.gpus[3]
        assert g3.lost and not g3.healthy and g3.uuid is None
        assert g3.errors == ("handle: GPU is lost",)
        assert [g.index for g in third.gpus] == list(range(8))


def test_application_xids_do_not_make_a_gpu_unhealthy():
    rec = load(H100)
    rec["frames"][0]["xid_events"] = [{"index": 1, "xid": 13}, {"index": 1, "xid": 43}]
    inv = read_gpus(RecordedNVML(rec))
    assert inv.gpus[1].healthy and inv.gpus[1].xids == ()


def test_device_count_failing_mid_run_reads_unavailable_then_recovers():
    rec = load(H100)
    broken = {"nvmlSystemGetDriverVersion": "580.159.04", "nvmlDeviceGetCount": {"nvml_error": "DRIVER_NOT_LOADED"},
              "devices": []}
    rec["frames"] = [rec["frames"][0], broken, rec["frames"][0]]
    reader = GPUReader(RecordedNVML(rec))
    assert reader.read().available
    inv = reader.read()
    assert not inv.available and inv.gpus == () and "Driver Not Loaded" in inv.errors[0]
    assert reader.read().available  # initialised afresh


@pytest.mark.parametrize("error, words", [
    ("DRIVER_NOT_LOADED", "driver is not loaded"),
    ("LIBRARY_NOT_FOUND", "libnvidia-ml.so.1 not found"),
    ("NO_PERMISSION", "/dev/nvidia"),
])
def test_init_failure_is_one_clear_line(error, words):
    rec = load(H100)
    rec["nvmlInit"] = {"nvml_error": error}
    with pytest.raises(NVMLUnavailable) as exc:
        read_gpus(RecordedNVML(rec))
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_no_nvml_on_this_machine():
    """The real pynvml without a driver (CI): NVMLUnavailable, one line."""
    reader = GPUReader()
    try:
        reader.open()
    except NVMLUnavailable as exc:
        assert "NVML" in str(exc) and "\n" not in str(exc)
    else:  # pragma: no cover - a GPU machine
        reader.close()
        pytest.skip("NVML is available here")


def test_without_pynvml(monkeypatch):
    monkeypatch.setattr(nvml, "_pynvml", None)
    with pytest.raises(NVMLUnavailable, match="not installed"):
        GPUReader().open()


@pytest.mark.parametrize("doc, words", [
    ({"format": "something-else", "frames": [{}]}, "not an NVML recording"),
    ({"format": nvml.RECORDING_FORMAT, "frames": []}, "no frames"),
])
def test_bad_recordings_are_rejected(doc, words):
    with pytest.raises(ValueError, match=words):
        RecordedNVML(doc)


def test_recording_file_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot load NVML recording"):
        RecordedNVML.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot load NVML recording"):
        RecordedNVML.load(bad)


def test_record_round_trip():
    """record() writes what RecordedNVML replays: recording a replay reads the same."""
    original = read_gpus(RecordedNVML(load(H100)))
    again = nvml.record(RecordedNVML(load(H100)), meta={"note": "round trip"})
    assert again["format"] == nvml.RECORDING_FORMAT
    replayed = read_gpus(RecordedNVML(copy.deepcopy(again)))
    assert replayed == original


def test_only_nvml_imports_pynvml():
    root = pathlib.Path(nvml.__file__).resolve().parents[2]
    offenders = [p for p in (root / "scheduler").rglob("*.py")
                 if p.name != "nvml.py" and ("import pynvml" in p.read_text() or "from pynvml" in p.read_text())]
    assert offenders == []
