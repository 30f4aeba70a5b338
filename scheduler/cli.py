"""The `gpusched` command. Subcommands are registered by each package through the
`gpusched.commands` entry-point group, so this module imports none of them."""
from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Callable, Iterator, Sequence

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
    parser.add_argument("--version", action="version", version=f"gpusched {package_version()}")
    _add_common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for ep in sorted(entry_points(group="gpusched.commands"), key=lambda e: e.name):
        try:
            register: Register = ep.load()
        except ImportError as exc:  # one broken subcommand must not take the others down
            _unavailable(sub, ep.name, str(exc))
            continue
        register(sub)
    for p in _subparsers(parser):
        _add_common(p, top=False)
        # The deepest subcommand's parser is what the namespace ends up holding (each level's
        # defaults are copied over its parent's), so an unknown flag is answered with its usage.
        p.set_defaults(_parser=p)
    return parser


def package_version() -> str:
    try:
        return version("gpusched")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _add_common(p: argparse.ArgumentParser, *, top: bool) -> None:
    """-v and --debug, on every level so they may come before or after the subcommand. A
    subcommand's parser starts from an empty namespace whose values overwrite the top
    level's, so the two levels count into separate names that main() adds up."""
    taken = p._option_string_actions
    dest = "verbose" if top else "verbose_sub"
    if "-v" not in taken and "--verbose" not in taken:
        p.add_argument("-v", "--verbose", action="count", dest=dest, default=0 if top else argparse.SUPPRESS,
                       help="log at DEBUG level; -vv also prints the traceback of an error")
    if "--debug" not in taken:
        p.add_argument("--debug", action="store_true", dest="debug" if top else "debug_sub",
                       default=False if top else argparse.SUPPRESS,
                       help="print the traceback of an error (the same as -vv)")


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield p
                yield from _subparsers(p)


def _unavailable(sub: argparse._SubParsersAction, name: str, why: str) -> None:
    p = sub.add_parser(name, help=f"(unavailable: {why})")

    def fail(_: argparse.Namespace) -> int:
        raise UserError(f"this installation cannot run {name!r}: {why}")
    p.set_defaults(func=fail)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 1 a runtime failure (one line on stderr), 2 a usage error
    (usage and one line), 130 interrupted."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        # parse_args would answer a subcommand's unknown flag with the top level's usage.
        # (The flags before the subcommand's name are the top level's.)
        first = argv.index(args.command) if args.command in argv else len(argv)
        top = any(a in argv[:first] for a in extra)
        (parser if top else getattr(args, "_parser", parser)).error(f"unrecognized arguments: {' '.join(extra)}")
    verbosity = args.verbose + getattr(args, "verbose_sub", 0)
    show_traceback = verbosity >= 2 or args.debug or getattr(args, "debug_sub", False)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Set apart from basicConfig, which changes nothing where logging was configured before.
    logging.getLogger().setLevel(logging.DEBUG if verbosity else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (UserError, OSError) as err:
        # OSError: a path or port of the user's (cannot write --out, address in use) more
        # often than a bug; -vv shows where it came from.
        if show_traceback:
            logging.getLogger("gpusched").exception("the error's traceback")
        what = str(err) if isinstance(err, UserError) else _os_error(err)
        print(f"gpusched {args.command}: error: {what}", file=sys.stderr)
        return 2 if isinstance(err, UsageError) else 1


def _os_error(err: OSError) -> str:
    text = err.strerror or str(err) or type(err).__name__
    where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
    return f"{where}: {text}" if where else text


class UserError(Exception):
    """An error the user can fix; printed as one line, without a traceback."""


class UsageError(UserError):
    """A flag's value that parsing could not check (e.g. against another flag): exit code 2."""


if __name__ == "__main__":
    # Run through the package module, so that UserError is one class for everyone.
    from scheduler.cli import main as package_main
    sys.exit(package_main())
