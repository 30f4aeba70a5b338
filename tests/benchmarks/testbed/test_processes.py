"""terminate_all: the test bed's way to stop the child daemons a test or chaos case started."""
from __future__ import annotations

import subprocess
import sys

from benchmarks.testbed.cluster import terminate_all

OBEYS = "import time; time.sleep(60)"
# ignores SIGTERM, as a daemon stuck in a call would; says when it is ready for it
IGNORES = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"


def test_terminated_together_and_a_straggler_killed():
    obeys = [subprocess.Popen([sys.executable, "-c", OBEYS]) for _ in range(2)]
    straggler = subprocess.Popen([sys.executable, "-c", IGNORES], stdout=subprocess.PIPE, text=True)
    assert straggler.stdout.readline().strip() == "ready"
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    terminate_all([*obeys, straggler, done], wait_s=1.0)
    assert [p.returncode for p in obeys] == [-15, -15]  # SIGTERM
    assert straggler.returncode == -9  # SIGKILL after wait_s
    assert done.returncode == 0  # already gone: left as it was
