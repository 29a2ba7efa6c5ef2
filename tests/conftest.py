import os
import shutil
import sys
from pathlib import Path

import pytest

# antechamber, sqm and packmol are installed into the virtual environment's bin/.
_bin = str(Path(sys.executable).parent)
if _bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")


def has_openff() -> bool:
    try:
        import openff.interchange  # noqa: F401
        import openff.toolkit  # noqa: F401
    except ImportError:
        return False
    return True


requires_openff = pytest.mark.skipif(not has_openff(), reason="the OpenFF toolkit is not installed")
requires_ambertools = pytest.mark.skipif(shutil.which("sqm") is None, reason="AmberTools (sqm) not installed")
