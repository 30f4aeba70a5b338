"""`python -m autoscaler ...`: the same as `gpusched autoscaler ...`."""
import sys

from scheduler.cli import main

sys.exit(main(["autoscaler", *sys.argv[1:]]))
