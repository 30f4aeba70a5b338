"""Where the production traces live: in the repository (benchmarks/data/traces, each with
its licence and attribution in its README), or in the directory $GPUSCHED_TRACES names, of
the same layout."""

from __future__ import annotations

import os
from pathlib import Path

BUNDLED = Path(__file__).resolve().parent / "data" / "traces"


def traces_dir() -> Path:
    """The traces' root: $GPUSCHED_TRACES when set (to replay other files), else the bundled copy."""
    env = os.environ.get("GPUSCHED_TRACES")
    return Path(env) if env else BUNDLED


def alibaba_dir() -> Path:
    return traces_dir() / "alibaba-gpu-2023"


def azure_dir() -> Path:
    return traces_dir() / "azure-llm-2023"


def mooncake_dir() -> Path:
    return traces_dir() / "mooncake-2025"
