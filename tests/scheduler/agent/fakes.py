"""Test doubles shared by the agent's tests: a CoreV1Api that records calls, a model store."""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
from types import SimpleNamespace


class FakeCoreV1:
    """Records calls like kubernetes.client.CoreV1Api; `fail` makes the next calls raise."""

    def __init__(self, annotations=None, labels=None):
        self.labels = labels if labels is not None else {}
        self.patches: list[tuple[str, dict, dict]] = []
        self.events: list[tuple[str, dict]] = []
        self.fail: Exception | None = None
        self.annotations = annotations if annotations is not None else {}
        self.missing = False
        self.json_patches: list[list[dict]] = []  # RFC 6902 patches, applied to `annotations`
        self.pods: list | None = []  # what list_pod_for_all_namespaces returns; None: 403

    def patch_node(self, name, body, **kw):
        if self.fail:
            raise self.fail
        if isinstance(body, list):  # a JSON patch: `test` ops enforced as the API server does (422)
            assert kw["_content_type"] == "application/json-patch+json"
            for op in body:
                key = op["path"].removeprefix("/metadata/annotations/").replace("~1", "/").replace("~0", "~")
                if op["op"] == "test" and self.annotations.get(key) != op["value"]:
                    raise RuntimeError("(422) the test operation failed")
            for op in body:
                key = op["path"].removeprefix("/metadata/annotations/").replace("~1", "/").replace("~0", "~")
                if op["op"] == "replace":
                    self.annotations[key] = op["value"]
                elif op["op"] == "remove":
                    del self.annotations[key]
            self.json_patches.append(body)
            return SimpleNamespace()
        self.patches.append((name, body, kw))
        self.labels.update(body["metadata"].get("labels", {}))
        return SimpleNamespace()

    def create_namespaced_event(self, namespace, body, **kw):
        if self.fail:
            raise self.fail
        self.events.append((namespace, body))

    def list_pod_for_all_namespaces(self, **kw):
        if self.pods is None:
            raise RuntimeError("(403) pods is forbidden")
        assert kw["field_selector"].startswith("spec.nodeName=")
        return SimpleNamespace(items=self.pods)

    def list_node(self, **kw):
        if self.fail:
            raise self.fail
        assert kw["field_selector"].startswith("metadata.name=") and kw["resource_version"] == "0"
        items = [] if self.missing else [SimpleNamespace(metadata=SimpleNamespace(annotations=self.annotations,
                                                                              labels=self.labels))]
        return SimpleNamespace(items=items)


MODEL = "org/tiny"
FILES = {"config.json": b'{"model_type": "llama"}', "model.safetensors": os.urandom(300_000),
         "tokenizer/tokenizer.json": b'{"v": 1}'}
SIZE = sum(len(v) for v in FILES.values())


def make_store(root: pathlib.Path, model: str = MODEL, files: dict[str, bytes] = FILES, manifest: bool | dict = True,
               sha: bool = True) -> pathlib.Path:
    d = root.joinpath(*model.split("/"))
    for name, data in files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)
    if manifest is True:
        manifest = {"files": [{"path": n, "size": len(b), **({"sha256": hashlib.sha256(b).hexdigest()} if sha else {})}
                              for n, b in files.items()]}
    if manifest:
        (d / "manifest.json").write_text(json.dumps(manifest))
    return d
