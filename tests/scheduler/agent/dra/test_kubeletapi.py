"""The vendored kubelet protos are the pinned module's, and the committed stubs describe
exactly them (scheduler/agent/dra/kubeletapi/README.md)."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from scheduler.agent.dra.kubeletapi import _generate

MODULES = {
    "dra/v1/api.proto": "scheduler.agent.dra.kubeletapi.dra.v1.api_pb2",
    "pluginregistration/v1/api.proto": "scheduler.agent.dra.kubeletapi.pluginregistration.v1.api_pb2",
}


def test_every_vendored_proto_has_a_stub():
    assert set(MODULES) == set(_generate.PROTOS)


@pytest.mark.parametrize("proto", sorted(_generate.PROTOS))
def test_the_committed_stub_describes_the_vendored_proto(proto: str, tmp_path: Path):
    from grpc_tools import protoc

    rel = str((_generate.HERE / proto).relative_to(_generate.ROOT))
    out = tmp_path / "set.pb"
    assert protoc.main(["protoc", f"-I{_generate.ROOT}", f"--descriptor_set_out={out}", rel]) == 0
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    _drop_json_names(fresh)  # protoc's Python output leaves out the default json_name of each field
    committed = descriptor_pb2.FileDescriptorProto.FromString(importlib.import_module(MODULES[proto]).DESCRIPTOR.serialized_pb)
    assert committed == fresh, f"regenerate: python -m scheduler.agent.dra.kubeletapi._generate ({proto})"


def _drop_json_names(msg: descriptor_pb2.FileDescriptorProto | descriptor_pb2.DescriptorProto) -> None:
    for m in msg.message_type if isinstance(msg, descriptor_pb2.FileDescriptorProto) else msg.nested_type:
        for f in m.field:
            f.ClearField("json_name")
        _drop_json_names(m)


def test_the_generated_grpc_stubs_are_what_protoc_writes_now(tmp_path: Path):
    """Byte for byte where this grpcio-tools is the one that generated them (the version line)."""
    from importlib.metadata import version

    _generate.generate(tmp_path)
    for proto in _generate.PROTOS:
        rel = (_generate.HERE / proto).relative_to(_generate.ROOT).with_name("api_pb2_grpc.py")
        committed = (_generate.ROOT / rel).read_text()
        fresh = (tmp_path / rel).read_text()
        if f"GRPC_GENERATED_VERSION = '{version('grpcio-tools')}'" not in committed:
            pytest.skip("another grpcio-tools generated the committed stubs; the descriptors are compared above")
        assert committed == fresh, f"regenerate: python -m scheduler.agent.dra.kubeletapi._generate ({rel})"


@pytest.mark.parametrize("proto", sorted(_generate.PROTOS))
def test_the_vendored_proto_is_the_pinned_kubelet_modules(proto: str):
    upstream = _generate.upstream_dir()
    if upstream is None:
        pytest.skip(f"k8s.io/kubelet@{_generate.KUBELET_VERSION} is not in the Go module cache (./dev setup)")
    assert (_generate.HERE / proto).read_bytes() == (upstream / _generate.PROTOS[proto]).read_bytes()
