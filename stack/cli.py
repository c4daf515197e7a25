"""The `drivestack` command: one subcommand per job."""

from __future__ import annotations

import argparse
import logging
import sys

from deploy.runtime import BackendUnavailable
from sim.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drivestack",
        description="A driving stack that passes distributions, with its own closed-loop simulator.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from deploy import cli as deploy_cli
    from deploy import policy as deploy_policy  # noqa: F401  registers the exported backends of `stack`
    from fleet import cli as fleet_cli
    from perception import cli as perception_cli
    from prediction import cli as prediction_cli
    from sim import cli as sim_cli
    from stack import commands as stack_commands
    from stack import policy  # noqa: F401  registers the `stack` policies before `sim` looks them up

    sim_cli.add_parser(sub)
    perception_cli.add_parser(sub)
    prediction_cli.add_parser(sub)
    stack_commands.add_parser(sub)
    deploy_cli.add_parsers(sub)
    fleet_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except (ConfigError, ValueError, FileNotFoundError, BackendUnavailable) as exc:
        # User errors (bad scenario file, unknown policy, bad config, a backend missing here) get one
        # clear line, no traceback.
        logging.getLogger("drivestack").debug("traceback", exc_info=True)  # shown with --verbose
        print(f"drivestack {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
