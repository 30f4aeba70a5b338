"""`gpusched claim-template`: the builder as a table (arguments in, the claim's request out),
its refusals, and the command's output and exit codes."""
from __future__ import annotations

import pytest
import yaml

from scheduler import contract
from scheduler.claim_template import ClaimTemplateError, claim_template, render
from scheduler.cli import main

# (arguments, name, the request's `exactly` less deviceClassName)
BUILDS = [
    (dict(memory="20Gi"), "gpu-share-20gi", {"capacity": {"requests": {"memory": "20Gi"}}}),
    (dict(memory=" 38Gi "), "gpu-share-38gi", {"capacity": {"requests": {"memory": "38Gi"}}}),
    (dict(memory="1.5Gi"), "gpu-share-1-5gi", {"capacity": {"requests": {"memory": "1.5Gi"}}}),
    (dict(memory="1Ti"), "gpu-share-1ti", {"capacity": {"requests": {"memory": "1Ti"}}}),  # 2**40: the cap
    (dict(memory="1Mi"), "gpu-share-1mi", {"capacity": {"requests": {"memory": "1Mi"}}}),  # 2**20: the floor
    (dict(memory="40G", name="qwen"), "qwen", {"capacity": {"requests": {"memory": "40G"}}}),
    (dict(gpus=1), "gpu-whole-1", {"allocationMode": "ExactCount", "count": 1}),
    (dict(gpus=8, name="llama-70b"), "llama-70b", {"allocationMode": "ExactCount", "count": 8}),
]


@pytest.mark.parametrize("args,name,exactly", BUILDS)
def test_builds_a_template_of_the_gpusched_device_class(args, name, exactly):
    t = claim_template(**args, namespace="llm")
    assert (t["apiVersion"], t["kind"]) == ("resource.k8s.io/v1", "ResourceClaimTemplate")
    assert t["metadata"] == {"name": name, "namespace": "llm"}
    (request,) = t["spec"]["spec"]["devices"]["requests"]
    assert request == {"name": "gpu", "exactly": {"deviceClassName": contract.DRA_DRIVER, **exactly}}


# (arguments, what the error says)
REFUSED = [
    (dict(memory="-5Gi"), "must be positive"),
    (dict(memory="0"), "must be positive"),
    # under 1Mi: the plugin's memory fraction for vLLM would be ~0 (a bare number is bytes)
    (dict(memory="0.5"), "'0.5' is 1 byte\\(s\\): a share is at least 1Mi"),  # rounded up to 1 byte
    (dict(memory="1"), "'1' is 1 byte\\(s\\): a share is at least 1Mi"),
    (dict(memory="1048575"), "at least 1Mi"),  # 2**20 - 1
    (dict(memory="1M"), "at least 1Mi"),  # 10**6 < 2**20
    (dict(memory="1e30"), "more than any GPU has"),
    (dict(memory="1025Gi"), "more than any GPU has"),      # 1 TiB + 1 GiB
    (dict(memory="abc"), "is not a quantity"),
    (dict(memory="20 Gi Gi"), "is not a quantity"),
    (dict(), "either --memory"),
    (dict(memory="20Gi", gpus=1), "either --memory"),
    (dict(gpus=0), "from 1 to 64"),
    (dict(gpus=65), "from 1 to 64"),
    (dict(gpus=True), "from 1 to 64"),
    (dict(memory="20Gi", name="Qwen_38"), "--name"),
    (dict(memory="20Gi", namespace="a.b"), "--namespace"),
]


@pytest.mark.parametrize("args,message", REFUSED)
def test_refuses_what_gpusched_cannot_place(args, message):
    with pytest.raises(ClaimTemplateError, match=message):
        claim_template(**args)


def test_no_namespace_is_written_unless_given():
    assert "namespace" not in claim_template(memory="20Gi")["metadata"]


def test_the_output_applies_as_is_and_its_comment_is_the_pod_snippet():
    text = render(claim_template(memory="20Gi", name="share"))
    comment = [line[2:] for line in text.splitlines() if line.startswith("#")]
    assert yaml.safe_load(text) == claim_template(memory="20Gi", name="share")  # comments are ignored
    blank = [i for i, line in enumerate(comment) if not line]
    snippet = yaml.safe_load("\n".join(comment[blank[0] + 1:blank[1]]))  # between the first two blank lines
    assert snippet["spec"]["resourceClaims"] == [{"name": "gpu", "resourceClaimTemplateName": "share"}]
    (c,) = snippet["spec"]["containers"]
    assert c["resources"] == {"claims": [{"name": "gpu"}]}
    assert '--gpu-memory-utilization "$GPUSCHED_GPU_MEMORY_UTILIZATION"' in c["args"][0]
    assert snippet["spec"]["schedulerName"] == contract.SCHEDULER_NAME
    whole = render(claim_template(gpus=2))
    assert "GPUSCHED_GPU_MEMORY_UTILIZATION" not in whole and "exactly its 2 GPU(s)" in whole


@pytest.mark.parametrize("argv,code,err", [
    (["--memory", "20Gi"], 0, ""),
    (["--memory", "-5Gi"], 2, "--memory: '-5Gi' must be positive"),   # a value, not an unknown option
    (["--memory=-5Gi"], 2, "must be positive"),
    (["--memory", "1e30"], 2, "more than any GPU has"),
    (["--memory", "0"], 2, "must be positive"),
    (["--memory", "0.5"], 2, "a share is at least 1Mi"),
    (["--memory", "1"], 2, "a share is at least 1Mi"),
    (["--gpus", "two"], 2, "not a whole number"),
    ([], 2, "one of the arguments --memory --gpus is required"),
])
def test_command_exit_codes(capsys, argv, code, err):
    def got() -> int:
        return main(["claim-template", *argv])
    if code == 0:
        assert got() == 0
        out = capsys.readouterr().out
        assert yaml.safe_load(out)["kind"] == "ResourceClaimTemplate"
        return
    try:
        assert got() == code
    except SystemExit as exc:  # argparse's own usage errors
        assert exc.code == code
    assert err in capsys.readouterr().err


def test_help_teaches_the_claim_and_the_annotation_it_replaces(capsys):
    with pytest.raises(SystemExit):
        main(["claim-template", "--help"])
    out = capsys.readouterr().out
    for part in ("capacity.requests.memory", contract.DRA_DRIVER, contract.GPU_MEMORY, "extender.annotationShares",
                 "kubectl apply -f -"):
        assert part in out, part
