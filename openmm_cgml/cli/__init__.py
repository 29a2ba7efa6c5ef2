"""The ``cgml`` command.

Each sub-command lives in its own module of this package and defines
``add_parser(subparsers)`` which registers an ``argparse`` parser whose ``func``
default takes the parsed arguments and returns an exit code.  Modules are found
automatically, so adding a command means adding a module.  A command's ``--help``
lists the keys of its YAML configuration, generated from the configuration model
(:mod:`._help`; a new command adds its model to ``_help.COMMANDS``).  Nothing in the library imports
this package.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from ..exceptions import CGMLError
from ._help import COMMANDS, HelpParser, config_help

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = HelpParser(
        prog="cgml", description="Coarse-grained models from all-atom OpenFF/OpenMM references."
    )
    parser.add_argument("--version", action="version", version=f"openmm_cgml {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.add_parser(sub)
    for name, command in sub.choices.items():
        if name in COMMANDS and command.epilog is None:
            command.epilog = config_help(name)  # generated when --help is shown
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # other libraries speak at WARNING; ours at INFO (-v: DEBUG)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("openmm_cgml").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    logging.getLogger("pint").setLevel(logging.ERROR)  # unit registries redefining each other's dimensions
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CGMLError as exc:
        logging.getLogger("openmm_cgml").debug("error details", exc_info=True)
        print(f"cgml {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
