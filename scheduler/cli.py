"""The `gpusched` command. Subcommands are registered by each package through the
`gpusched.commands` entry-point group, so this module imports none of them."""
from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points
from typing import Callable, Sequence

Register = Callable[[argparse._SubParsersAction], None]

EPILOG = """\
examples:
  gpusched cluster up --nodes 4 --gpu-profile small --state .state   # local test bed
  gpusched demo                                                        # place and scale pods on it
  gpusched <command> --help                                            # what each command does
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpusched",
        description="GPU-aware placement and warm autoscaling for LLM inference on Kubernetes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for ep in sorted(entry_points(group="gpusched.commands"), key=lambda e: e.name):
        try:
            register: Register = ep.load()
        except ImportError as exc:  # one broken subcommand must not take the others down
            _unavailable(sub, ep.name, str(exc))
            continue
        register(sub)
    return parser


def _unavailable(sub: argparse._SubParsersAction, name: str, why: str) -> None:
    p = sub.add_parser(name, help=f"(unavailable: {why})")

    def fail(_: argparse.Namespace) -> int:
        raise UserError(f"this installation cannot run {name!r}: {why}")
    p.set_defaults(func=fail)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except UserError as err:
        print(f"gpusched {args.command}: error: {err}", file=sys.stderr)
        return 1


class UserError(Exception):
    """An error the user can fix; printed as one line, without a traceback."""


if __name__ == "__main__":
    # Run through the package module, so that UserError is one class for everyone.
    from scheduler.cli import main as package_main
    sys.exit(package_main())
