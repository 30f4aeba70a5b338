"""Where the production traces live: in the repository (benchmarks/data/traces, each with
its licence and attribution in its README), or in the directory $GPUSCHED_TRACES names, of
the same layout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

BUNDLED = Path(__file__).resolve().parent / "data" / "traces"


def traces_dir() -> Path:
    """The traces' root: $GPUSCHED_TRACES when set (to replay other files), else the bundled copy."""
    env = os.environ.get("GPUSCHED_TRACES")
    return Path(env) if env else BUNDLED


class RequestTrace(NamedTuple):
    """A bundled trace of LLM requests: where it lives, the files `gpusched bench autoscale`
    replays by default, the prefix of their names (how a run knows them, wherever they
    are), the short name a run gives them, and whom a run on them cites."""
    directory: str
    files: tuple[str, ...]
    prefix: str
    short: str
    citation: str


AZURE_2023 = RequestTrace(
    "azure-llm-2023", ("AzureLLMInferenceTrace_code.csv", "AzureLLMInferenceTrace_conv.csv"),
    "AzureLLMInferenceTrace_", "azure-",
    "Azure LLM inference traces 2023 (CC-BY 4.0), from Patel et al., \"Splitwise: Efficient Generative LLM "
    "Inference Using Phase Splitting\", ISCA'24")
MOONCAKE_2025 = RequestTrace(
    "mooncake-2025", ("MooncakeTrace_conversation.csv",), "MooncakeTrace_", "mooncake-",
    "Mooncake's conversation trace (Apache-2.0), from Qin et al., \"Mooncake: Trading More Storage for Less "
    "Computation - A KVCache-centric Architecture for Serving LLM Chatbot\", FAST'25")
REQUEST_TRACES: tuple[RequestTrace, ...] = (AZURE_2023, MOONCAKE_2025)


def request_trace_files() -> list[Path]:
    """The bundled request traces' files under traces_dir(), in REQUEST_TRACES' order."""
    return [traces_dir() / t.directory / f for t in REQUEST_TRACES for f in t.files]


def alibaba_dir() -> Path:
    return traces_dir() / "alibaba-gpu-2023"


def azure_dir() -> Path:
    return traces_dir() / AZURE_2023.directory


def mooncake_dir() -> Path:
    return traces_dir() / MOONCAKE_2025.directory
