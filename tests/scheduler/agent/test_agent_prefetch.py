"""Prefetch from a local store and from an HTTP server on 127.0.0.1: atomic, verified,
and a failed or interrupted copy leaves nothing counted as cached."""
from __future__ import annotations

import functools
import json
import pathlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scheduler.agent.cache import TEMP_PREFIX, scan_cache
from scheduler.agent.prefetch import (PrefetchError, Prefetcher, PrefetchRequest, cleanup_temp, parse_manifest,
                                      parse_requests)
from tests.scheduler.agent.fakes import FILES, MODEL, SIZE, make_store

def nothing_left(cache_dir: pathlib.Path) -> None:
    assert scan_cache([cache_dir], measure_residency=False).models == ()
    assert [p.name for p in cache_dir.iterdir() if p.name.startswith(TEMP_PREFIX)] == []


def cached(cache_dir: pathlib.Path) -> dict[str, int]:
    return {m.model: m.bytes for m in scan_cache([cache_dir], measure_residency=False).models}


@pytest.fixture
def dirs(tmp_path):
    store, cache_dir = tmp_path / "store", tmp_path / "cache"
    store.mkdir()
    cache_dir.mkdir()
    return store, cache_dir


# --- the annotation ----------------------------------------------------------------

@pytest.mark.parametrize("text, models, n_problems", [
    (None, [], 0),
    ("", [], 0),
    ('[{"model": "org/a"}, {"model": "org/b", "source": "https://s/org/b"}]', ["org/a", "org/b"], 0),
    ('["org/a", "gpt2"]', ["org/a", "gpt2"], 0),
    ('["org/a", "org/a"]', ["org/a"], 0),
    ('[{"model": "../etc"}, {"model": "org/$(id)"}, {"model": "a/b/c"}, "org/ok"]', ["org/ok"], 3),
    ('[{"model": "org/a", "source": 3}]', [], 1),
    ('[42]', [], 1),
    ('{"model": "org/a"}', [], 1),
    ("not json", [], 1),
    (json.dumps([f"org/m{i}" for i in range(40)]), [f"org/m{i}" for i in range(32)], 1),
    ("[" + " " * 20000 + "]", [], 1),
])
def test_parse_requests(text, models, n_problems):
    reqs, problems = parse_requests(text)
    assert [r.model for r in reqs] == models
    assert len(problems) == n_problems


@pytest.mark.parametrize("files, words", [
    ([{"path": "../x", "size": 1}], "unsafe file path"),
    ([{"path": "/etc/passwd", "size": 1}], "unsafe file path"),
    ([{"path": "a//b", "size": 1}], "unsafe file path"),
    ([{"path": ".hidden", "size": 1}], "unsafe file path"),
    ([{"path": "a/../../b", "size": 1}], "unsafe file path"),
    ([{"path": "ok", "size": -1}], "size must be a byte count"),
    ([{"path": "ok", "size": "1"}], "size must be a byte count"),
    ([{"path": "ok", "size": 1, "sha256": "xyz"}], "sha256 must be 64 hex digits"),
    ([{"path": "ok", "size": 1}, {"path": "ok", "size": 1}], "listed twice"),
    ([], "must hold"),
])
def test_bad_manifests(files, words):
    with pytest.raises(PrefetchError, match=words):
        parse_manifest(json.dumps({"files": files}).encode())


# --- local store ---------------------------------------------------------------------

@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "listed"])
def test_local_store(dirs, manifest):
    store, cache_dir = dirs
    make_store(store, manifest=manifest)
    progress = []
    res = Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL),
                                                         progress=lambda m, d, t: progress.append((m, d, t)))
    assert res.bytes == SIZE and res.files == 3 and res.path == str(cache_dir / "org" / "tiny")
    assert progress[-1] == (MODEL, SIZE, SIZE)
    for name, data in FILES.items():
        p = cache_dir / "org" / "tiny" / name
        assert p.read_bytes() == data and (p.stat().st_mode & 0o777) == 0o644
    assert (cache_dir / "org" / "tiny").stat().st_mode & 0o777 == 0o755
    assert not (cache_dir / "org" / "tiny" / "manifest.json").exists()
    assert cached(cache_dir) == {MODEL: SIZE}
    assert [p.name for p in cache_dir.iterdir()] == ["org"]


def test_explicit_source_under_the_store(dirs):
    store, cache_dir = dirs
    make_store(store / "mirror", model="org/tiny")
    Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL, str(store / "mirror" / "org" / "tiny")))
    assert cached(cache_dir) == {MODEL: SIZE}


@pytest.mark.parametrize("source", ["/etc", "relative/path", "{store}/../outside", "file:///etc"])
def test_sources_outside_the_store_are_refused(dirs, source):
    store, cache_dir = dirs
    (store.parent / "outside").mkdir()
    with pytest.raises(PrefetchError, match="not under an allowed --model-store|absolute path"):
        Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL, source.format(store=store)))
    nothing_left(cache_dir)


def test_symlink_in_the_store_escaping_it_is_refused(dirs, tmp_path):
    store, cache_dir = dirs
    d = make_store(store, manifest=False)
    (tmp_path / "secret").write_bytes(b"s" * 10)
    (d / "stolen.bin").symlink_to(tmp_path / "secret")
    with pytest.raises(PrefetchError, match="outside the model store"):
        Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL))
    nothing_left(cache_dir)


@pytest.mark.parametrize("tamper, words", [
    ("sha", "sha256 mismatch"),
    ("shorter", "got 299990 bytes, expected 300000"),
    ("longer", "more than the 300000 bytes expected"),
])
def test_local_verification_failures_leave_nothing(dirs, tamper, words):
    store, cache_dir = dirs
    d = make_store(store)
    data = FILES["model.safetensors"]
    (d / "model.safetensors").write_bytes({"sha": bytes(len(data)), "shorter": data[:-10],
                                           "longer": data + b"x"}[tamper])
    with pytest.raises(PrefetchError, match=words):
        Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL))
    nothing_left(cache_dir)


def test_cancelled_prefetch_leaves_nothing(dirs):
    store, cache_dir = dirs
    make_store(store)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(PrefetchError, match="cancelled"):
        Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL), cancel=cancel)
    nothing_left(cache_dir)


def test_killed_prefetch_leaves_a_hidden_dir_that_is_not_counted_and_cleaned_up(dirs):
    _, cache_dir = dirs
    tmp = cache_dir / (TEMP_PREFIX + "abc")  # what a SIGKILL mid-copy leaves
    (tmp / "config.json").parent.mkdir(parents=True)
    (tmp / "config.json").write_bytes(b"{}")
    (tmp / "model.safetensors").write_bytes(b"half")
    assert cached(cache_dir) == {}
    assert cleanup_temp(str(cache_dir)) == [TEMP_PREFIX + "abc"]
    assert list(cache_dir.iterdir()) == []


def test_not_enough_space(dirs):
    store, cache_dir = dirs
    make_store(store)
    with pytest.raises(PrefetchError, match="not enough space"):
        Prefetcher(str(cache_dir), [str(store)], free_margin_bytes=2**62).fetch(PrefetchRequest(MODEL))
    nothing_left(cache_dir)


# --- what is already in the cache directory -----------------------------------------

def test_org_symlink_is_never_followed_for_writes(dirs, tmp_path):
    store, cache_dir = dirs
    make_store(store)
    outside = tmp_path / "outside"
    outside.mkdir()
    (cache_dir / "org").symlink_to(outside)
    with pytest.raises(PrefetchError, match="not a plain directory"):
        Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL))
    assert list(outside.iterdir()) == []
    assert [p.name for p in cache_dir.iterdir()] == ["org"]


def test_model_symlink_is_replaced_not_followed(dirs, tmp_path):
    store, cache_dir = dirs
    make_store(store)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("mine")
    (cache_dir / "org").mkdir()
    (cache_dir / "org" / "tiny").symlink_to(outside)
    Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL))
    assert not (cache_dir / "org" / "tiny").is_symlink()
    assert cached(cache_dir) == {MODEL: SIZE}
    assert [p.name for p in outside.iterdir()] == ["keep"]


def test_incomplete_model_is_replaced_atomically(dirs):
    store, cache_dir = dirs
    make_store(store)
    old = cache_dir / "org" / "tiny"
    old.mkdir(parents=True)
    (old / "config.json").write_bytes(b"{}")
    (old / "model.safetensors").write_bytes(b"")  # 0-byte: not counted
    assert cached(cache_dir) == {}
    Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL))
    assert cached(cache_dir) == {MODEL: SIZE}
    assert [p.name for p in cache_dir.iterdir()] == ["org"]


def test_a_directory_that_is_not_a_model_is_not_replaced(dirs):
    store, cache_dir = dirs
    make_store(store)
    (cache_dir / "org" / "tiny" / "notes").mkdir(parents=True)
    with pytest.raises(PrefetchError, match="not a model directory"):
        Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL))
    assert (cache_dir / "org" / "tiny" / "notes").is_dir()
    nothing_left(cache_dir)


# --- HTTP store on loopback ----------------------------------------------------------

class StoreHandler(SimpleHTTPRequestHandler):
    truncate: set[str] = set()
    lie_length: dict[str, int] = {}
    redirect: dict[str, str] = {}

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        if path in self.redirect:
            self.send_response(302)
            self.send_header("Location", self.redirect[path])
            self.end_headers()
            return
        local = pathlib.Path(self.translate_path(path))
        if path in self.truncate and local.is_file():
            data = local.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])  # then the connection drops
            self.wfile.flush()
            self.close_connection = True
            return
        if path in self.lie_length and local.is_file():
            data = local.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(self.lie_length[path]))
            self.end_headers()
            self.wfile.write(data)
            return
        super().do_GET()


@pytest.fixture
def http_store(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Handler(StoreHandler):
        truncate, lie_length, redirect = set(), {}, {}

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/models", Handler
    finally:
        server.shutdown()
        server.server_close()


def test_http_store(http_store, tmp_path):
    root, url, _ = http_store
    make_store(root / "models")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    res = Prefetcher(str(cache_dir), [url]).fetch(PrefetchRequest(MODEL))
    assert res.source == f"{url}/{MODEL}" and res.bytes == SIZE
    assert cached(cache_dir) == {MODEL: SIZE}
    assert (cache_dir / "org" / "tiny" / "model.safetensors").read_bytes() == FILES["model.safetensors"]


@pytest.mark.parametrize("breakage, words", [
    ("truncated", "got 150000 bytes, expected 300000"),
    ("length_mismatch", "server says 123 bytes, manifest says 300000"),
    ("manifest_size_wrong", "server says 300000 bytes, manifest says 300001"),
    ("missing_file", "HTTP 404"),
    ("no_manifest", "manifest.json: HTTP 404"),
    ("redirect", "redirect to .* not followed"),
])
def test_http_failures_leave_nothing_counted(http_store, tmp_path, breakage, words):
    root, url, handler = http_store
    files = dict(FILES)
    manifest: bool | dict = True
    if breakage == "manifest_size_wrong":
        manifest = {"files": [{"path": n, "size": len(b) + (1 if n == "model.safetensors" else 0)}
                              for n, b in files.items()]}
    d = make_store(root / "models", manifest=manifest)
    weights = f"/models/{MODEL}/model.safetensors"
    if breakage == "truncated":
        handler.truncate.add(weights)
    if breakage == "length_mismatch":
        handler.lie_length[weights] = 123
    if breakage == "missing_file":
        (d / "tokenizer" / "tokenizer.json").unlink()
    if breakage == "no_manifest":
        (d / "manifest.json").unlink()
    if breakage == "redirect":
        handler.redirect[f"/models/{MODEL}/manifest.json"] = "http://example.invalid/manifest.json"
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    with pytest.raises(PrefetchError, match=words):
        Prefetcher(str(cache_dir), [url], timeout_s=5).fetch(PrefetchRequest(MODEL))
    nothing_left(cache_dir)


@pytest.mark.parametrize("source", ["http://127.0.0.1:1/elsewhere/org/tiny", "{url}/../../etc",
                                    "{url}/org/tiny?x=1", "http://user:pw@{host}/models/org/tiny",
                                    "ftp://127.0.0.1/models/org/tiny"])
def test_http_sources_outside_the_store_are_refused(http_store, tmp_path, source):
    _, url, _ = http_store
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    src = source.format(url=url, host=url.split("/")[2])
    with pytest.raises(PrefetchError):
        Prefetcher(str(cache_dir), [url]).fetch(PrefetchRequest(MODEL, src))
    nothing_left(cache_dir)


@pytest.mark.parametrize("store", ["relative/dir", "http://u:p@host/x", "https://host/x?q=1"])
def test_bad_store_flags(store, tmp_path):
    with pytest.raises(ValueError):
        Prefetcher(str(tmp_path), [store])
