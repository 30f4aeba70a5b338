"""`gpusched claim-template`: a ResourceClaimTemplate of DeviceClass gpu.gpusched.io, the way
to ask for GPU memory where the DRA plugin runs (docs/ownership.md).

A share is one device with a `capacity.requests.memory`: kube-scheduler's allocator sums
what claims consume of each GPU, and the DRA plugin hands the container that GPU alone with
its memory cap. Whole GPUs are `count` devices with no capacity request (each then consumes
all of its device, so no share joins it). `claim_template` is pure; `register` is the CLI.
"""
from __future__ import annotations

import argparse
import re
from typing import Any

import yaml

from scheduler import contract
from scheduler.cli import UsageError
from scheduler.core.snapshot import MAX_GPUS
from scheduler.names import label_error, subdomain_error
from scheduler.nodeinfo import MAX_GPU_MEMORY_MIB
from scheduler.quantity import QuantityError, format_bytes, parse_bytes

# The DRA plugin hands a share its memory as a fraction of the GPU's (vLLM's
# --gpu-memory-utilization): a few bytes round to ~0 and the server fails to start.
MIN_SHARE_BYTES = 2**20
MAX_SHARE_BYTES = MAX_GPU_MEMORY_MIB * 2**20  # the most memory a GPU may report (1 TiB)
REQUEST = "gpu"  # the request's name and the pod's claim name


class ClaimTemplateError(ValueError):
    """The arguments do not make a claim gpusched can place; the message says why."""


def claim_template(*, memory: str | None = None, gpus: int | None = None, name: str | None = None,
                   namespace: str | None = None) -> dict[str, Any]:
    """The ResourceClaimTemplate for a share of `memory` on one GPU, or for `gpus` whole GPUs.
    The quantity is kept as written (the API server and the allocator read it), once it is
    known to be at least 1Mi and no more than a GPU may have."""
    if (memory is None) == (gpus is None):
        raise ClaimTemplateError("give either --memory (a share of one GPU) or --gpus (whole GPUs)")
    exactly: dict[str, Any] = {"deviceClassName": contract.DRA_DRIVER}
    if memory is not None:
        try:
            size = parse_bytes(memory, what="--memory", max_bytes=10**40)
        except QuantityError as exc:
            raise ClaimTemplateError(str(exc)) from None
        if size < MIN_SHARE_BYTES:
            raise ClaimTemplateError(f"--memory: {memory.strip()!r} is {size} byte(s): a share is at least "
                                     f"{format_bytes(MIN_SHARE_BYTES)} (a size like 20Gi; a bare number is bytes)")
        if size > MAX_SHARE_BYTES:
            raise ClaimTemplateError(f"--memory: {memory!r} is more than any GPU has (a share is of one GPU, "
                                     f"at most {format_bytes(MAX_SHARE_BYTES)}; whole GPUs: --gpus)")
        memory = memory.strip()
        exactly["capacity"] = {"requests": {"memory": memory}}
        default_name = "gpu-share-" + re.sub(r"[^a-z0-9]+", "-", memory.lower()).strip("-")
    else:
        if isinstance(gpus, bool) or not isinstance(gpus, int) or not 1 <= gpus <= MAX_GPUS:
            raise ClaimTemplateError(f"--gpus: {gpus!r} must be a whole number from 1 to {MAX_GPUS}")
        exactly.update(allocationMode="ExactCount", count=gpus)
        default_name = f"gpu-whole-{gpus}"
    name = default_name if name is None else name
    if why := subdomain_error(name):
        raise ClaimTemplateError(f"--name: {why}")
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        if why := label_error(namespace):
            raise ClaimTemplateError(f"--namespace: {why}")
        metadata["namespace"] = namespace
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate", "metadata": metadata,
            "spec": {"spec": {"devices": {"requests": [{"name": REQUEST, "exactly": exactly}]}}}}


def pod_snippet(template: dict[str, Any]) -> str:
    """How a pod uses the template: its spec.resourceClaims and the container's
    resources.claims, and for a share vLLM's memory fraction from the DRA plugin's env."""
    name = template["metadata"]["name"]
    exactly = template["spec"]["spec"]["devices"]["requests"][0]["exactly"]
    share = "capacity" in exactly
    lines = [
        "The pod that uses it (a Deployment's spec.template.spec), under the gpusched scheduler:",
        "",
        "  spec:",
        f"    schedulerName: {contract.SCHEDULER_NAME}",
        "    resourceClaims:",
        f"    - name: {REQUEST}",
        f"      resourceClaimTemplateName: {name}",
        "    containers:",
        "    - name: server",
        "      resources:",
        "        claims:",
        f"        - name: {REQUEST}",
    ]
    if share:
        lines += [
            "      command: [sh, -c]",
            "      args:",
            "      - exec vllm serve MODEL --gpu-memory-utilization \"$GPUSCHED_GPU_MEMORY_UTILIZATION\"",
            "",
            f"The DRA plugin gives the container its one GPU ({exactly['capacity']['requests']['memory']} of it) and sets",
            "GPUSCHED_GPU_MEMORY_UTILIZATION to the share's fraction of that GPU. vLLM obeys it only",
            "from its command line, through a shell: Kubernetes' $(VAR) does not see variables the",
            "plugin injects. Without MPS nothing else caps the memory (docs/ownership.md).",
        ]
    else:
        lines += ["", f"The DRA plugin gives the container exactly its {exactly['count']} GPU(s), whole."]
    lines += ["No nvidia.com/gpu and no gpusched.io/gpu-memory annotation beside the claim."]
    return "\n".join(lines)


def render(template: dict[str, Any]) -> str:
    """The YAML `kubectl apply -f -` takes, the pod snippet as a comment above it."""
    comment = "\n".join(("# " + line).rstrip() for line in pod_snippet(template).splitlines())
    return comment + "\n" + yaml.safe_dump(template, sort_keys=False)


EPILOG = f"""\
examples:
  gpusched claim-template --memory 20Gi                      # a 20Gi share of one GPU
  gpusched claim-template --memory 38Gi --name qwen-38gi --namespace llm | kubectl apply -f -
  gpusched claim-template --gpus 2                           # two whole GPUs

A share is a device of DeviceClass {contract.DRA_DRIVER} asking capacity.requests.memory:
kube-scheduler's allocator counts it on the GPU it picks, gpusched's extender scores the
nodes, and on the node the DRA plugin (agent.dra.enabled, the chart's default) gives the
container only that GPU and the share's memory fraction. This replaces the
{contract.GPU_MEMORY} annotation, which the chart refuses where the DRA plugin runs
(extender.annotationShares). The output's comment shows the pod that uses the template.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "claim-template", help="print a ResourceClaimTemplate asking for a GPU share (or whole GPUs)",
        description="Print a ResourceClaimTemplate of DeviceClass gpu.gpusched.io, with the pod snippet "
                    "that uses it as a comment.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    # "-5Gi" is a value here, not an option: argparse takes only "-5" or "-.5" for a negative number
    p._negative_number_matcher = re.compile(r"^-[\d.]")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--memory", metavar="QUANTITY",
                      help=f"GPU memory of a share of one GPU, a Kubernetes quantity (20Gi, 40G), at most "
                           f"{format_bytes(MAX_SHARE_BYTES)}")
    what.add_argument("--gpus", metavar="K", type=_whole_number,
                      help=f"K whole GPUs of one node instead (1 to {MAX_GPUS})")
    p.add_argument("--name", help="the template's name (default: gpu-share-<memory> or gpu-whole-<K>)")
    p.add_argument("--namespace", help="its namespace (default: none written, kubectl's current one)")
    p.set_defaults(func=run)


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def run(args: argparse.Namespace) -> int:
    try:
        template = claim_template(memory=args.memory, gpus=args.gpus, name=args.name, namespace=args.namespace)
    except ClaimTemplateError as exc:
        raise UsageError(str(exc)) from None
    print(render(template), end="")
    return 0
