"""``python -m openmm_cgml``: the version and the optional components found (the same report as ``cgml info``)."""

import sys

from .cli import main

sys.exit(main(["info", *sys.argv[1:]]))
