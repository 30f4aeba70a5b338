"""`python -m autoscaler ...`: the same as `gpusched autoscaler ...`, without the entry point."""
from __future__ import annotations

import argparse
import logging
import sys

from autoscaler.cli import DESCRIPTION, EPILOG, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    from scheduler.cli import UserError

    p = argparse.ArgumentParser(prog="python -m autoscaler", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    add_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except UserError as err:
        print(f"autoscaler: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
