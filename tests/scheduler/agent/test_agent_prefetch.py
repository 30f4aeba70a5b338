"""Prefetch from a local store and from a Hub endpoint on 127.0.0.1 into the Hugging
Face hub layout: atomic, verified, and a failed or interrupted copy leaves nothing
counted as cached."""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import threading

import pytest

from scheduler.agent.cache import TEMP_PREFIX, scan_cache
from scheduler.agent.prefetch import (PrefetchError, Prefetcher, PrefetchRequest, cleanup_temp, content_commit,
                                      parse_manifest, parse_requests, prune_requests)
from tests.scheduler.agent.fakehub import FakeHub, Repo
from tests.scheduler.agent.fakes import FILES, MODEL, SIZE, make_store

HUB_MODEL = "hub/models--org--tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

def nothing_left(cache_dir: pathlib.Path) -> None:
    assert scan_cache([cache_dir], measure_residency=False).models == ()
    left = [str(p) for p in cache_dir.rglob("*") if p.name.startswith(TEMP_PREFIX)]
    assert left == []


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
    ('[{"model": "org/a", "revision": "v1.0"}, {"model": "org/b", "revision": "../x"}]', ["org/a"], 1),
    ('[{"model": "org/a", "revision": 7}]', [], 1),
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


# "org/a" cached: its entries go, whatever their spelling; what the agent cannot
# read stays for its writer to see in the PrefetchRejected Event
@pytest.mark.parametrize("text, cached_models, after", [
    ('["org/a", "org/b"]', {"org/a"}, '["org/b"]'),
    ('[{"model": "org/a", "source": "hf"}, {"model": "org/b"}]', {"org/a"}, '[{"model":"org/b"}]'),
    ('["org/a"]', {"org/a"}, "[]"),
    ('["org/a", 42, {"model": "../x"}]', {"org/a"}, '[42,{"model":"../x"}]'),
    ('["org/b"]', {"org/a"}, None),  # nothing done: no write
    ("not json", {"org/a"}, None),
    ('{"model": "org/a"}', {"org/a"}, None),
    (None, {"org/a"}, None),
])
def test_prune_requests(text, cached_models, after):
    assert prune_requests(text, cached_models) == after


# --- local store ---------------------------------------------------------------------

def blob(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "listed"])
def test_local_store_writes_the_hub_layout(dirs, manifest):
    store, cache_dir = dirs
    make_store(store, manifest=manifest)
    progress = []
    res = Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL),
                                                         progress=lambda m, d, t: progress.append((m, d, t)))
    commit = content_commit([(n, blob(d)) for n, d in FILES.items()])
    model_dir = cache_dir / HUB_MODEL
    assert res.bytes == SIZE and res.files == 3 and res.path == str(model_dir / "snapshots" / commit)
    assert progress[-1] == (MODEL, SIZE, SIZE)
    assert (model_dir / "refs" / "main").read_text() == commit
    for name, data in FILES.items():
        link = model_dir / "snapshots" / commit / name
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))  # relative, as the Hub client makes
        assert link.resolve() == (model_dir / "blobs" / blob(data)).resolve()
        assert link.read_bytes() == data and (link.stat().st_mode & 0o777) == 0o644
    assert sorted(p.name for p in (model_dir / "blobs").iterdir()) == sorted(blob(d) for d in FILES.values())
    assert not (model_dir / "snapshots" / commit / "manifest.json").exists()
    assert cached(cache_dir) == {MODEL: SIZE}
    assert [p.name for p in cache_dir.iterdir()] == ["hub"]


def test_a_second_prefetch_of_the_same_files_copies_nothing(dirs):
    store, cache_dir = dirs
    make_store(store)
    p = Prefetcher(str(cache_dir), [str(store)])
    first = p.fetch(PrefetchRequest(MODEL))
    blobs = {b.name: b.stat().st_ino for b in (cache_dir / HUB_MODEL / "blobs").iterdir()}
    second = p.fetch(PrefetchRequest(MODEL))
    assert second.path == first.path
    assert {b.name: b.stat().st_ino for b in (cache_dir / HUB_MODEL / "blobs").iterdir()} == blobs
    assert cached(cache_dir) == {MODEL: SIZE}


def test_revision_names_the_ref(dirs):
    store, cache_dir = dirs
    make_store(store)
    Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL, revision="v1.0"))
    commit = (cache_dir / HUB_MODEL / "refs" / "v1.0").read_text()
    assert (cache_dir / HUB_MODEL / "snapshots" / commit).is_dir()
    Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL, revision=COMMIT))
    assert (cache_dir / HUB_MODEL / "snapshots" / COMMIT / "config.json").read_bytes() == FILES["config.json"]


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


def test_killed_prefetch_leaves_hidden_files_that_are_not_counted_and_cleaned_up(dirs):
    _, cache_dir = dirs
    model_dir = cache_dir / HUB_MODEL
    for d in ("blobs", "refs", "snapshots/" + TEMP_PREFIX + "abc"):
        (model_dir / d).mkdir(parents=True)
    (model_dir / "blobs" / (TEMP_PREFIX + "x.incomplete")).write_bytes(b"half")  # what a SIGKILL mid-copy leaves
    (model_dir / "snapshots" / (TEMP_PREFIX + "abc") / "config.json").symlink_to("../../blobs/nothing")
    (model_dir / "blobs" / "hf-own.incomplete").write_bytes(b"half")  # huggingface_hub's: it resumes these
    (cache_dir / (TEMP_PREFIX + "old")).mkdir()  # an older agent's work directory
    assert cached(cache_dir) == {}
    assert sorted(cleanup_temp(str(cache_dir))) == [
        TEMP_PREFIX + "old", f"{HUB_MODEL}/blobs/{TEMP_PREFIX}x.incomplete", f"{HUB_MODEL}/snapshots/{TEMP_PREFIX}abc"]
    assert [p.name for p in (model_dir / "blobs").iterdir()] == ["hf-own.incomplete"]
    assert list((model_dir / "snapshots").iterdir()) == []


def test_not_enough_space(dirs):
    store, cache_dir = dirs
    make_store(store)
    with pytest.raises(PrefetchError, match="not enough space"):
        Prefetcher(str(cache_dir), [str(store)], free_margin_bytes=2**62).fetch(PrefetchRequest(MODEL))
    nothing_left(cache_dir)


# --- what is already in the cache directory -----------------------------------------

@pytest.mark.parametrize("planted", ["hub", HUB_MODEL, f"{HUB_MODEL}/blobs", f"{HUB_MODEL}/snapshots"])
def test_a_planted_symlink_is_never_followed_for_writes(dirs, tmp_path, planted):
    store, cache_dir = dirs
    make_store(store)
    outside = tmp_path / "outside"
    outside.mkdir()
    (cache_dir / planted).parent.mkdir(parents=True, exist_ok=True)
    (cache_dir / planted).symlink_to(outside)
    with pytest.raises(PrefetchError, match="not a plain directory"):
        Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL))
    assert list(outside.iterdir()) == []


def test_an_incomplete_snapshot_is_replaced_atomically(dirs):
    store, cache_dir = dirs
    make_store(store)
    commit = content_commit([(n, blob(d)) for n, d in FILES.items()])
    old = cache_dir / HUB_MODEL / "snapshots" / commit
    old.mkdir(parents=True)
    (old / "config.json").symlink_to("../../blobs/gone")  # dangling: not complete
    assert cached(cache_dir) == {}
    Prefetcher(str(cache_dir), [str(store)]).fetch(PrefetchRequest(MODEL))
    assert cached(cache_dir) == {MODEL: SIZE}
    assert [p.name for p in (cache_dir / HUB_MODEL / "snapshots").iterdir()] == [commit]


# --- a Hub endpoint on loopback (huggingface_hub's own download) ---------------------

@pytest.fixture
def hub():
    h = FakeHub({MODEL: Repo(COMMIT, dict(FILES))}, token="hf_secret").start()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def token_file(tmp_path):
    p = tmp_path / "token"
    p.write_text("hf_secret\n")
    return str(p)


def test_hub_store(hub, dirs, token_file):
    _, cache_dir = dirs
    res = Prefetcher(str(cache_dir), [hub.url], token_file=token_file).fetch(PrefetchRequest(MODEL))
    assert res.source == hub.url and res.bytes == SIZE and res.files == 3
    assert res.path == str(cache_dir / HUB_MODEL / "snapshots" / COMMIT)
    assert (cache_dir / HUB_MODEL / "refs" / "main").read_text() == COMMIT
    assert (cache_dir / HUB_MODEL / "snapshots" / COMMIT / "model.safetensors").read_bytes() == \
        FILES["model.safetensors"]
    assert {auth for _, _, auth, _ in hub.requests} == {"Bearer hf_secret"}
    assert cached(cache_dir) == {MODEL: SIZE}


def test_hub_download_reports_progress_from_the_blobs(hub, dirs, token_file):
    _, cache_dir = dirs
    hub.pause_midway["model.safetensors"] = 1.0  # the weights stall; config and tokenizer are done
    p = Prefetcher(str(cache_dir), [hub.url], token_file=token_file)
    p.progress_every_s = 0.1
    seen = []
    p.fetch(PrefetchRequest(MODEL), progress=lambda m, d, t: seen.append((m, d, t)))
    assert seen[0] == (MODEL, 0, SIZE) and seen[-1] == (MODEL, SIZE, SIZE)
    # mid-way: the finished blobs (huggingface_hub writes 10 MB chunks, so a blob being
    # written shows once a chunk is in)
    assert (MODEL, SIZE - len(FILES["model.safetensors"]), SIZE) in seen, seen


def test_hub_download_survives_a_dropped_connection(hub, dirs, token_file):
    _, cache_dir = dirs
    hub.truncate_once.add("model.safetensors")
    Prefetcher(str(cache_dir), [hub.url], token_file=token_file, timeout_s=5).fetch(PrefetchRequest(MODEL))
    assert cached(cache_dir) == {MODEL: SIZE}
    assert len(hub.gets("model.safetensors")) == 2


def test_hub_download_after_a_killed_agent_fetches_only_what_is_missing(hub, dirs, token_file):
    _, cache_dir = dirs
    data = FILES["model.safetensors"]
    blobs = cache_dir / HUB_MODEL / "blobs"
    blobs.mkdir(parents=True)
    (blobs / blob(data)).write_bytes(data)  # finished before the kill
    stale = blobs / f"{blob(FILES['config.json'])}.1a2b3c4d.incomplete"  # huggingface_hub's, mid-download
    stale.write_bytes(b"{")
    os.utime(stale, (1, 1))
    fresh = blobs / "other.5e6f7a8b.incomplete"  # someone else's download in progress: not ours to remove
    fresh.write_bytes(b"x")
    assert cleanup_temp(str(cache_dir)) == [f"{HUB_MODEL}/blobs/{stale.name}"]
    fresh.unlink()
    Prefetcher(str(cache_dir), [hub.url], token_file=token_file).fetch(PrefetchRequest(MODEL))
    assert hub.gets("model.safetensors") == []
    assert len(hub.gets("config.json")) == 1
    assert cached(cache_dir) == {MODEL: SIZE}


@pytest.mark.parametrize("token, words", [
    (None, "401|GatedRepo|Unauthorized"),
    ("wrong", "401|GatedRepo|Unauthorized"),
    ("", "does not hold one token"),
])
def test_hub_refusals_leave_nothing(hub, dirs, tmp_path, token, words):
    _, cache_dir = dirs
    token_file = None
    if token is not None:
        token_file = tmp_path / "t"
        token_file.write_text(token)
    with pytest.raises(PrefetchError, match=words):
        Prefetcher(str(cache_dir), [hub.url], token_file=token_file and str(token_file),
                   timeout_s=5).fetch(PrefetchRequest(MODEL))
    nothing_left(cache_dir)


def test_hub_unknown_model_or_revision(hub, dirs, token_file):
    _, cache_dir = dirs
    p = Prefetcher(str(cache_dir), [hub.url], token_file=token_file, timeout_s=5)
    with pytest.raises(PrefetchError, match="org/nope@main"):
        p.fetch(PrefetchRequest("org/nope"))
    with pytest.raises(PrefetchError, match="org/tiny@v9"):
        p.fetch(PrefetchRequest(MODEL, revision="v9"))
    nothing_left(cache_dir)


@pytest.mark.parametrize("source", ["http://127.0.0.1:1", "{url}/org/tiny", "https://huggingface.co",
                                    "ftp://127.0.0.1/models/org/tiny"])
def test_hub_sources_other_than_the_stores_are_refused(hub, dirs, source):
    _, cache_dir = dirs
    with pytest.raises(PrefetchError):
        Prefetcher(str(cache_dir), [hub.url]).fetch(PrefetchRequest(MODEL, source.format(url=hub.url)))
    assert hub.requests == []
    nothing_left(cache_dir)


@pytest.mark.parametrize("store", ["relative/dir", "http://u:p@host/x", "https://host/x?q=1", "s3://B/x",
                                   "s3://bucket/../x", "s3://bucket/x?y=1"])
def test_bad_store_flags(store, tmp_path):
    with pytest.raises(ValueError):
        Prefetcher(str(tmp_path), [store])


# --- an S3-compatible store on loopback (moto's server: real HTTP, real S3 protocol) --

@pytest.fixture
def s3(monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    import boto3

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}.items():
        monkeypatch.setenv(k, v)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="weights")
    for name, data in FILES.items():
        client.put_object(Bucket="weights", Key=f"store/{MODEL}/{name}", Body=data)
    client.put_object(Bucket="weights", Key=f"store/{MODEL}/.hidden", Body=b"x")
    try:
        yield endpoint, client
    finally:
        server.stop()


def test_s3_store(s3, dirs):
    endpoint, _ = s3
    _, cache_dir = dirs
    res = Prefetcher(str(cache_dir), ["s3://weights/store"], s3_endpoint=endpoint).fetch(PrefetchRequest(MODEL))
    assert res.source == f"s3://weights/store/{MODEL}" and res.bytes == SIZE and res.files == 3
    assert (pathlib.Path(res.path) / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert cached(cache_dir) == {MODEL: SIZE}


@pytest.mark.parametrize("source, words", [
    ("s3://weights/store/org/nope", "holds no files"),
    ("s3://other/store/org/tiny", "not under an allowed"),
    ("s3://weights/store/../secret", "not under an allowed"),
    ("s3://weights/storeX/org/tiny", "not under an allowed"),
])
def test_s3_refusals_leave_nothing(s3, dirs, source, words):
    endpoint, _ = s3
    _, cache_dir = dirs
    with pytest.raises(PrefetchError, match=words):
        Prefetcher(str(cache_dir), ["s3://weights/store"], s3_endpoint=endpoint).fetch(PrefetchRequest(MODEL, source))
    nothing_left(cache_dir)


def test_s3_missing_bucket(s3, dirs):
    endpoint, _ = s3
    _, cache_dir = dirs
    with pytest.raises(PrefetchError, match="NoSuchBucket"):
        Prefetcher(str(cache_dir), ["s3://absent"], s3_endpoint=endpoint).fetch(PrefetchRequest(MODEL))
    nothing_left(cache_dir)
