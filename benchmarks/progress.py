"""Progress bars for the benchmarks' CLIs: drawn on a terminal, left out of logs."""
from __future__ import annotations

import sys
from typing import IO, Any


def progress_bar(*, file: IO[str] | None = None, **kwargs: Any) -> Any:
    """A tqdm bar on stderr (or `file`), disabled unless that is a terminal: tqdm redraws
    with carriage returns, which in a CI log or a redirected file are a run of garbage
    lines. A disabled bar takes the same calls and does nothing."""
    from tqdm import tqdm

    out = sys.stderr if file is None else file
    return tqdm(file=out, disable=not is_terminal(out), **kwargs)


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
