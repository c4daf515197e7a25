"""The `drivestack` command: one subcommand per job."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from core.config import ConfigError
from deploy.base import BackendUnavailable


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drivestack",
        description="A driving stack that passes distributions, with its own closed-loop simulator.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--debug", action="store_true", help=f"show an error's traceback, not one line (or set {DEBUG_VARIABLE}=1)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from deploy import cli as deploy_cli
    from fleet import cli as fleet_cli
    from perception import cli as perception_cli
    from prediction import cli as prediction_cli
    from sim import cli as sim_cli
    from stack import commands as stack_commands
    from stack.policy_flags import STACK_POLICY_FLAGS

    sim_cli.add_parser(sub, policy_flags=STACK_POLICY_FLAGS)
    perception_cli.add_parser(sub)
    prediction_cli.add_parser(sub)
    stack_commands.add_parser(sub)
    deploy_cli.add_parsers(sub)
    fleet_cli.add_parser(sub)
    return parser


# Errors a user makes or meets (a bad scenario file, an unknown policy, a backend missing here, an output
# path that exists, a full or read-only disk) end in one line and exit code 2; anything else is a bug,
# and keeps its traceback.
USER_ERRORS = (ConfigError, ValueError, OSError, BackendUnavailable)
DEBUG_VARIABLE = "DRIVESTACK_DEBUG"
INTERRUPTED = 130  # the shell's code for a command ended by SIGINT


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt as exc:
        if debug:
            raise
        # On a line of its own: the terminal's ^C and a progress bar may hold the current one.
        print(f"\ndrivestack {args.command}: {str(exc) or 'interrupted'}", file=sys.stderr)
        return INTERRUPTED
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"drivestack {args.command}: error: {describe_error(exc)}", file=sys.stderr)
        return 2


def describe_error(exc: BaseException) -> str:
    """One line: an OS error as "path: reason" (not "[Errno 17] File exists: 'path'"), others as they say."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror}" + (f" ({exc.filename2})" if exc.filename2 is not None else "")
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
