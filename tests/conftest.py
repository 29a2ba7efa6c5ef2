import os
import sys
from pathlib import Path

# antechamber, sqm and packmol are installed into the virtual environment's bin/.
_bin = str(Path(sys.executable).parent)
if _bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")

from openmm_cgml.testing import has_openff, requires_ambertools, requires_openff  # noqa: E402,F401
