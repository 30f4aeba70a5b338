"""Progress bars of `gpusched bench`: drawn on a terminal only, so that a log or a CI
transcript holds no carriage-return redraws."""
from __future__ import annotations

import io

import pytest

from benchmarks.progress import progress_bar

pytest.importorskip("tqdm")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Closed(io.StringIO):
    def isatty(self) -> bool:
        raise ValueError("I/O operation on closed file")


# stream            -> bar drawn
STREAMS = [
    (Terminal, True),
    (io.StringIO, False),  # a pipe, a file, pytest's capture
    (Closed, False),
]


@pytest.mark.parametrize("stream,drawn", STREAMS)
def test_bar_only_on_a_terminal(stream, drawn):
    out = stream()
    with progress_bar(total=10, desc="x", mininterval=0, file=out) as bar:
        for _ in range(10):
            bar.update(1)
        bar.total += 5  # what the autoscale bench does; a disabled bar takes it too
        bar.set_postfix_str("y", refresh=False)
    text = out.getvalue() if not isinstance(out, Closed) else ""
    assert ("\r" in text and "10/15" in text) == drawn
    if not drawn:
        assert text == ""


def test_placement_bench_draws_no_bar_into_a_log(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from scheduler.cli import main
    from tests.benchmarks.placement.test_trace import NODE_HEADER, POD_HEADER, write

    nodes = write(tmp_path, NODE_HEADER + "\nn0,16000,65536,2,T4\n", "nodes.csv")
    pods = write(tmp_path, POD_HEADER + "\np0,2000,1024,1,500,,LS,Running,0,0,0\n")
    assert main(["bench", "placement", "--nodes", str(nodes), "--pods", str(pods), "--policies", "gpusched",
                 "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "pod/s" not in err
