from __future__ import annotations

import pytest

from scheduler.core import PodRequest, RequestError, parse_pod

GiB = 2**30
GPU = "nvidia.com/gpu"


def pod(*, annotations=None, containers=None, init=None, selector=None) -> dict:
    spec: dict = {"containers": containers if containers is not None else [{"name": "c"}]}
    if init is not None:
        spec["initContainers"] = init
    if selector is not None:
        spec["nodeSelector"] = selector
    return {"metadata": {"name": "p", "namespace": "ns", "annotations": annotations or {}}, "spec": spec}


def gpus(limits=None, requests=None) -> dict:
    res = {}
    if limits is not None:
        res["limits"] = {GPU: limits}
    if requests is not None:
        res["requests"] = {GPU: requests}
    return {"name": "c", "resources": res}


@pytest.mark.parametrize("p,want", [
    # no GPU resource, no annotation: not a GPU pod
    (pod(), PodRequest()),
    # limits as the API server returns them (strings)
    (pod(containers=[gpus(limits="2")]), PodRequest(whole_gpus=2)),
    # requests only; ints as hand-written dicts have them
    (pod(containers=[gpus(requests=1)]), PodRequest(whole_gpus=1)),
    # limit == request is the only legal pair for extended resources
    (pod(containers=[gpus(limits="4", requests="4")]), PodRequest(whole_gpus=4)),
    # summed over containers: 2 + 1 = 3
    (pod(containers=[gpus(limits="2"), gpus(limits="1")]), PodRequest(whole_gpus=3)),
    # init containers run alone first: max(sum(1), max(init 2)) = 2
    (pod(containers=[gpus(limits="1")], init=[gpus(limits="2")]), PodRequest(whole_gpus=2)),
    # ... and do not add to the regular containers: max(3, 1) = 3
    (pod(containers=[gpus(limits="3")], init=[gpus(limits="1")]), PodRequest(whole_gpus=3)),
    # a share: memory alone
    (pod(annotations={"gpusched.io/gpu-memory": "40Gi"}), PodRequest(gpu_memory=40 * GiB)),
    # whole GPUs with a per-GPU memory floor
    (pod(containers=[gpus(limits="2")], annotations={"gpusched.io/gpu-memory": "80Gi"}),
     PodRequest(whole_gpus=2, gpu_memory=80 * GiB)),
    # model and its size; 16G is decimal
    (pod(annotations={"gpusched.io/model": "meta-llama/Llama-3.1-8B-Instruct", "gpusched.io/model-bytes": "16G"}),
     PodRequest(model="meta-llama/Llama-3.1-8B-Instruct", model_bytes=16 * 10**9)),
    # products: annotation list (spaces and empty items dropped) plus the nodeSelector pin
    (pod(annotations={"gpusched.io/gpu-products": " A100-SXM4-80GB, ,H100*"},
         selector={"nvidia.com/gpu.product": "L40S"}),
     PodRequest(products=frozenset({"A100-SXM4-80GB", "H100*", "L40S"}))),
])
def test_parse_pod(p, want):
    assert parse_pod(p) == want


@pytest.mark.parametrize("req,shared,gpu_pod", [
    (PodRequest(), False, False),
    (PodRequest(gpu_memory=GiB), True, True),
    (PodRequest(whole_gpus=1), False, True),
    (PodRequest(whole_gpus=1, gpu_memory=GiB), False, True),  # a memory floor, not a share
])
def test_properties(req, shared, gpu_pod):
    assert (req.shared, req.gpu_pod) == (shared, gpu_pod)


@pytest.mark.parametrize("p,msg", [
    (pod(annotations={"gpusched.io/gpu-memory": "-5Gi"}), "gpu-memory: '-5Gi' must be positive"),
    (pod(annotations={"gpusched.io/gpu-memory": "1e30"}), "gpu-memory: '1e30' is larger than"),
    (pod(annotations={"gpusched.io/gpu-memory": "abc"}), "gpu-memory: 'abc' is not a quantity"),
    (pod(annotations={"gpusched.io/gpu-memory": "0"}), "must be positive"),
    # 2 TiB per GPU is no GPU at all
    (pod(annotations={"gpusched.io/gpu-memory": "2Ti"}), "larger than"),
    (pod(annotations={"gpusched.io/gpu-memory": ""}), "gpu-memory: is empty"),
    (pod(annotations={"gpusched.io/gpu-memory": 40}), "expected a string"),
    (pod(annotations={"gpusched.io/model-bytes": "16GB"}), "model-bytes: '16GB' is not a quantity"),
    (pod(containers=[gpus(limits="-1")]), "'-1' must not be negative"),
    (pod(containers=[gpus(limits=-1)]), "must not be negative"),
    (pod(containers=[gpus(limits="65")]), "65 is more than the 64 GPUs"),
    (pod(containers=[gpus(limits="two")]), "'two' is not a whole number"),
    (pod(containers=[gpus(limits="500m")]), "is not a whole number"),
    (pod(containers=[gpus(limits=1.5)]), "expected a whole number"),
    (pod(containers=[gpus(limits=True)]), "expected a whole number"),
    (pod(containers=[gpus(limits="2", requests="1")]), "request 1 differs from limit 2"),
    # 40 + 40 = 80 over containers
    (pod(containers=[gpus(limits="40"), gpus(limits="40")]), "80 over all containers"),
    (pod(annotations={"gpusched.io/model": "bad model id"}), "is not a model id"),
    (pod(annotations={"gpusched.io/gpu-products": " , ,"}), "names no product"),
    # 65 distinct names, each matched against every product at each filter and re-learning
    (pod(annotations={"gpusched.io/gpu-products": ",".join(f"P{i}" for i in range(65))}),
     "names 65 products, at most 64"),
    ({"metadata": {"annotations": ["x"]}, "spec": {}}, "annotations: expected an object"),
    ({"metadata": {}, "spec": {"containers": "c"}}, "must be lists"),
    ("not a pod", "expected an object"),
])
def test_bad_input(p, msg):
    with pytest.raises(RequestError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        parse_pod(p)


def test_request_error_is_a_value_error():
    assert issubclass(RequestError, ValueError)


def test_repeated_product_names_count_once():
    """64 distinct names pass however often each repeats: the cap is on what is matched."""
    names = ",".join(f"P{i % 64}" for i in range(1000))
    assert len(parse_pod(pod(annotations={"gpusched.io/gpu-products": names})).products) == 64
