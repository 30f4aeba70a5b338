"""Model cache scan on temporary directories: both layouts, partial downloads, bad input."""
from __future__ import annotations

import hashlib
import os
import pathlib

import pytest

from scheduler.agent import cache
from scheduler.agent.cache import BadModelId, scan_cache, validate_model_id

REV = "0123456789abcdef0123456789abcdef01234567"
REV_OLD = "fedcba9876543210fedcba9876543210fedcba98"


def blob(model_dir: pathlib.Path, data: bytes) -> str:
    h = hashlib.sha256(data).hexdigest()
    (model_dir / "blobs").mkdir(parents=True, exist_ok=True)
    p = model_dir / "blobs" / h
    if not p.exists():
        p.write_bytes(data)
    return h


def hf_model(root: pathlib.Path, model: str, files: dict[str, bytes], rev: str = REV, main: bool = True) -> pathlib.Path:
    """A hub-cache model as huggingface_hub lays it out: snapshot symlinks into blobs/."""
    d = root / ("models--" + model.replace("/", "--"))
    snap = d / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        h = blob(d, data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(d / "blobs" / h, link.parent))
    if main:
        (d / "refs").mkdir(exist_ok=True)
        (d / "refs" / "main").write_text(rev)
    return d


def plain_model(root: pathlib.Path, model: str, files: dict[str, bytes]) -> pathlib.Path:
    d = root.joinpath(*model.split("/"))
    for name, data in files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)
    return d


WEIGHTS = {"config.json": b'{"a": 1}', "model.safetensors": b"w" * 4096}
W_BYTES = 8 + 4096


def ids(scan) -> dict[str, int]:
    return {m.model: m.bytes for m in scan.models}


def test_hf_complete_snapshot_counts_each_blob_once(tmp_path):
    # two snapshot files with identical content share one blob: counted once
    hf_model(tmp_path, "org/llama", {"config.json": b"{}", "model.safetensors": b"x" * 1000,
                                    "copy/model.safetensors": b"x" * 1000, "tokenizer.json": b"t" * 10})
    scan = scan_cache([tmp_path], measure_residency=False)
    assert ids(scan) == {"org/llama": 2 + 1000 + 10}
    m = scan.models[0]
    assert (m.layout, m.revision, m.tier) == ("hf", REV, "disk")
    assert scan.problems == () and scan.incomplete == ()


def test_hf_home_layout_with_hub_subdir(tmp_path):
    hf_model(tmp_path / "hub", "gpt2", WEIGHTS)
    assert ids(scan_cache([tmp_path], measure_residency=False)) == {"gpt2": W_BYTES}


@pytest.mark.parametrize("breakage, expect_problem", [
    ("incomplete_blob", None),
    ("dangling_link", None),
    ("zero_byte_weight", "is empty (0 bytes)"),
    ("link_outside_blobs", "points outside the model's blobs/"),
    ("missing_shard", None),
    ("no_weights", None),
    ("no_snapshot", None),
])
def test_hf_incomplete_snapshots_are_not_counted(tmp_path, breakage, expect_problem):
    files = dict(WEIGHTS)
    if breakage == "zero_byte_weight":
        files["model-00002.safetensors"] = b""
    if breakage == "missing_shard":
        files["model.safetensors.index.json"] = (b'{"weight_map": {"a": "model.safetensors", '
                                                 b'"b": "model-00002-of-00002.safetensors"}}')
    if breakage == "no_weights":
        files = {"config.json": b"{}"}
    d = hf_model(tmp_path, "org/m", files)
    if breakage == "incomplete_blob":
        (d / "blobs" / "abc123.incomplete").write_bytes(b"half")
    if breakage == "dangling_link":
        os.unlink(d / "blobs" / hashlib.sha256(b"w" * 4096).hexdigest())
    if breakage == "link_outside_blobs":
        secret = tmp_path / "elsewhere.bin"
        secret.write_bytes(b"s" * 10)
        (d / "snapshots" / REV / "extra.bin").symlink_to(secret)
    if breakage == "no_snapshot":
        for p in (d / "snapshots" / REV).iterdir():
            p.unlink()
        (d / "snapshots" / REV).rmdir()
    scan = scan_cache([tmp_path], measure_residency=False)
    assert scan.models == ()
    assert any(s.startswith("org/m:") for s in scan.incomplete)
    if expect_problem:
        assert any(expect_problem in p for p in scan.problems), scan.problems
    else:
        assert scan.problems == ()


def test_hf_sharded_model_complete(tmp_path):
    files = {"config.json": b"{}", "model.safetensors.index.json":
             b'{"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}',
             "model-1.safetensors": b"1" * 100, "model-2.safetensors": b"2" * 100}
    hf_model(tmp_path, "org/sharded", files)
    scan = scan_cache([tmp_path], measure_residency=False)
    assert ids(scan) == {"org/sharded": sum(len(v) for v in files.values())}


def test_hf_falls_back_to_an_older_complete_revision(tmp_path):
    d = hf_model(tmp_path, "org/m", WEIGHTS, rev=REV_OLD, main=False)
    hf_model(tmp_path, "org/m", {"config.json": b"{}", "model.safetensors": b"new" * 10}, rev=REV)
    os.unlink(d / "blobs" / hashlib.sha256(b"new" * 10).hexdigest())  # main's weights missing
    scan = scan_cache([tmp_path], measure_residency=False)
    assert [(m.model, m.revision) for m in scan.models] == [("org/m", REV_OLD)]


def test_plain_layouts(tmp_path):
    plain_model(tmp_path, "meta-llama/Llama-3.1-8B-Instruct", WEIGHTS)
    plain_model(tmp_path, "gpt2", {"config.json": b"{}", "pytorch_model.bin": b"b" * 50})
    plain_model(tmp_path, "org/gguf-only", {"model-q4.gguf": b"g" * 20})
    plain_model(tmp_path, "org/config-only", {"config.json": b"{}"})
    plain_model(tmp_path, "org/partial", {"config.json": b"{}", "model.safetensors.part": b"p"})
    scan = scan_cache([tmp_path], measure_residency=False)
    assert ids(scan) == {"meta-llama/Llama-3.1-8B-Instruct": W_BYTES, "gpt2": 52, "org/gguf-only": 20}
    assert sorted(s.split(":")[0] for s in scan.incomplete) == ["org/config-only", "org/partial"]
    assert all(m.layout == "plain" for m in scan.models)


def test_several_cache_dirs_and_best_tier_wins(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    plain_model(a, "org/one", WEIGHTS)
    hf_model(b, "org/one", WEIGHTS)
    hf_model(b, "org/two", WEIGHTS)
    scan = scan_cache([a, b], loaded=["org/two"], measure_residency=False)
    assert {m.model: m.tier for m in scan.models} == {"org/one": "disk", "org/two": "gpu"}
    assert [m.model for m in scan.cached_models()] == ["org/one", "org/two"]


def test_hidden_and_prefetch_temp_dirs_are_ignored(tmp_path):
    plain_model(tmp_path / ".gpusched-prefetch-abc123", "x", WEIGHTS)
    plain_model(tmp_path, ".hidden-model", WEIGHTS)
    (tmp_path / ".locks").mkdir()
    assert scan_cache([tmp_path], measure_residency=False) == cache.CacheScan()


def test_symlink_loops_are_reported_not_followed(tmp_path):
    d = plain_model(tmp_path, "org/loopy", WEIGHTS)
    (d / "a.bin").symlink_to("b.bin")
    (d / "b.bin").symlink_to("a.bin")
    (d / "sub").symlink_to(".")  # a directory loop: not followed
    (tmp_path / "again").symlink_to(tmp_path)  # the cache dir through itself
    (tmp_path / "org" / "back").symlink_to("..")
    plain_model(tmp_path, "org/fine", WEIGHTS)
    scan = scan_cache([tmp_path], measure_residency=False)
    assert ids(scan) == {"org/fine": W_BYTES}
    assert any("symlink loop at a.bin" in p for p in scan.problems)
    assert any("sub is a symlink to a directory" in p for p in scan.problems)


def test_zero_byte_weight_file_in_plain_layout(tmp_path):
    plain_model(tmp_path, "org/empty", {"config.json": b"{}", "model.safetensors": b""})
    scan = scan_cache([tmp_path], measure_residency=False)
    assert scan.models == ()
    assert any("org/empty" in p and "0 bytes" in p for p in scan.problems)


def test_unreadable_directory(tmp_path, monkeypatch):
    plain_model(tmp_path, "org/locked", WEIGHTS)
    plain_model(tmp_path, "org/open", WEIGHTS)
    hf_model(tmp_path, "org/hflocked", WEIGHTS)
    real_scandir = os.scandir
    locked = {str(tmp_path / "org" / "locked"), str(tmp_path / "models--org--hflocked" / "snapshots" / REV)}

    def scandir(path="."):
        if os.fspath(path) in locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    scan = scan_cache([tmp_path], measure_residency=False)
    assert ids(scan) == {"org/open": W_BYTES}
    assert sum("Permission denied" in p for p in scan.problems) == 2, scan


def test_unreadable_file_reported(tmp_path, monkeypatch):
    d = plain_model(tmp_path, "org/m", WEIGHTS)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.fspath(p).endswith(".safetensors")
                        else real_access(p, mode, **kw))
    scan = scan_cache([tmp_path], measure_residency=False)
    assert scan.models == () and any("model.safetensors is not readable" in p for p in scan.problems)
    assert d.exists()


def test_directory_vanishing_mid_scan(tmp_path, monkeypatch):
    plain_model(tmp_path, "org/going", WEIGHTS)
    hf_model(tmp_path, "org/hfgoing", WEIGHTS)
    plain_model(tmp_path, "org/staying", WEIGHTS)
    real_scandir = os.scandir
    gone = {str(tmp_path / "org" / "going"), str(tmp_path / "models--org--hfgoing" / "snapshots")}

    def scandir(path="."):
        if os.fspath(path) in gone:
            raise FileNotFoundError(2, "No such file or directory", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    scan = scan_cache([tmp_path], measure_residency=False)
    assert ids(scan) == {"org/staying": W_BYTES}
    assert scan.problems == ()  # gone is simply not cached


def test_missing_cache_dir_is_a_problem_not_a_crash(tmp_path):
    scan = scan_cache([tmp_path / "nope"], measure_residency=False)
    assert scan.models == () and any("does not exist" in p for p in scan.problems)


@pytest.mark.parametrize("name", ["bad name", "$(reboot)", "semi;colon", "back`tick`", "a--b", "-leading"])
def test_unsafe_plain_ids_are_skipped(tmp_path, name):
    plain_model(tmp_path, f"org/{name}", WEIGHTS)
    scan = scan_cache([tmp_path], measure_residency=False)
    assert scan.models == ()
    assert any("unsafe model id" in p for p in scan.problems)


@pytest.mark.parametrize("folder", ["models--a--b--c", "models--org--..", "models--org--x;y", "models--"])
def test_unsafe_hf_folders_are_skipped(tmp_path, folder):
    d = tmp_path / folder
    (d / "snapshots" / REV).mkdir(parents=True)
    (d / "snapshots" / REV / "model.safetensors").write_bytes(b"x")
    scan = scan_cache([tmp_path], measure_residency=False)
    assert scan.models == () and any("skipped" in p for p in scan.problems)


@pytest.mark.parametrize("model, ok", [
    ("meta-llama/Llama-3.1-8B-Instruct", True),
    ("gpt2", True),
    ("Qwen/Qwen2.5-72B-Instruct-AWQ", True),
    ("org/name_with_underscore", True),
    ("../etc/passwd", False),
    ("org/../../x", False),
    ("/abs/path", False),
    ("a/b/c", False),
    ("org/na me", False),
    ("org/$(id)", False),
    ("org/x;rm -rf /", False),
    ("org/x\n", False),
    ("org/..", False),
    ("org/a..b", False),
    ("org/name.", False),
    ("", False),
    ("x" * 97, False),
    (None, False),
])
def test_validate_model_id(model, ok):
    if ok:
        assert validate_model_id(model) == model
    else:
        with pytest.raises(BadModelId):
            validate_model_id(model)


def test_page_cache_residency(tmp_path):
    plain_model(tmp_path, "org/hot", {"config.json": b"{}", "model.safetensors": os.urandom(1 << 20)})
    with open(tmp_path / "org" / "hot" / "model.safetensors", "rb") as f:
        f.read()  # now in the page cache
    scan = scan_cache([tmp_path])
    m = scan.models[0]
    if m.resident_fraction is None:  # pragma: no cover - not Linux
        pytest.skip("mincore not available here")
    assert m.resident_fraction >= 0.9 and m.tier == "host-memory"
    assert scan_cache([tmp_path], measure_residency=False).models[0].tier == "disk"


def test_evicted_pages_read_as_disk(tmp_path):
    p = plain_model(tmp_path, "org/cold", {"config.json": b"{}", "model.safetensors": os.urandom(4 << 20)})
    fd = os.open(p / "model.safetensors", os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    r = cache.resident_bytes(str(p / "model.safetensors"))
    if r is None or r[0] > r[1] // 2:
        pytest.skip("this filesystem keeps the pages (tmpfs/overlay); cannot evict here")
    assert scan_cache([tmp_path]).models[0].tier == "disk"


def test_scan_writes_nothing(tmp_path):
    hf_model(tmp_path, "org/a", WEIGHTS)
    plain_model(tmp_path, "org/b", WEIGHTS)
    d = plain_model(tmp_path, "org/c", {"config.json": b"{}", "model.safetensors": b""})
    (d / "loop").symlink_to("loop")

    def state():
        out = {}
        for dirpath, dirs, files in os.walk(tmp_path):
            for n in dirs + files:
                p = os.path.join(dirpath, n)
                st = os.lstat(p)
                out[p] = (st.st_mode, st.st_size, st.st_mtime_ns)
        return out

    before = state()
    scan_cache([tmp_path])
    assert state() == before


def _loop(d: pathlib.Path) -> pathlib.Path:
    (d / "a").symlink_to(d / "b")
    (d / "b").symlink_to(d / "a")
    return d / "a"


def _file(d: pathlib.Path) -> pathlib.Path:
    (d / "models").write_text("not a directory")
    return d / "models"


def _dangling(d: pathlib.Path) -> pathlib.Path:
    (d / "models").symlink_to(d / "gone")
    return d / "models"


def _under_file(d: pathlib.Path) -> pathlib.Path:
    (d / "f").write_text("")
    return d / "f" / "models"


def _fifo(d: pathlib.Path) -> pathlib.Path:
    os.mkfifo(d / "p")
    return d / "p"


def _link_to_dir(d: pathlib.Path) -> pathlib.Path:
    (d / "real").mkdir()
    (d / "models").symlink_to(d / "real")
    return d / "models"


# (what is at the cache path, kind, words the message must use, words it must not)
CACHE_DIR_ROWS = [
    ("missing", lambda d: d / "nope", "missing", "does not exist (yet)", None),
    ("symlink loop", _loop, "symlink-loop", "is a symlink loop", "does not exist"),
    ("plain file", _file, "not-a-directory", "is a plain file, not a directory", "does not exist"),
    ("dangling symlink", _dangling, "dangling-symlink", "which does not exist", "(yet)"),
    ("path under a file", _under_file, "not-a-directory", "a parent of it is a file", "does not exist"),
    ("named pipe", _fifo, "not-a-directory", "is a named pipe", "does not exist"),
    ("directory", lambda d: d, None, None, None),
    ("symlink to a directory", _link_to_dir, None, None, None),
]


@pytest.mark.parametrize("make, kind, says, never", [r[1:] for r in CACHE_DIR_ROWS], ids=[r[0] for r in CACHE_DIR_ROWS])
def test_each_bad_cache_dir_has_its_own_message(tmp_path, make, kind, says, never):
    path = str(make(tmp_path))
    got = cache.cache_dir_problem(path)
    scan = scan_cache([path], measure_residency=False)
    if kind is None:
        assert got is None and scan.problems == ()
        return
    assert got is not None and got[0] == kind and says in got[1] and path in got[1], got
    assert never is None or never not in got[1]
    assert scan.models == () and scan.problems == (got[1],)  # the scan reports the same words, once


def test_agent_startup_names_the_bad_cache_dir(tmp_path, caplog):
    import argparse

    from scheduler.agent.cli import add_arguments, build_agent
    p = argparse.ArgumentParser()
    add_arguments(p)
    path = _loop(tmp_path)
    with caplog.at_level("WARNING", logger="scheduler.agent"):
        build_agent(p.parse_args(["--cache-dir", str(path), "--no-publish", "--once"]))
    assert any("is a symlink loop" in r.getMessage() for r in caplog.records)
    assert not any("does not exist" in r.getMessage() for r in caplog.records)
