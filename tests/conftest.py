import os
import sys
from pathlib import Path

# antechamber, sqm and packmol are installed into the virtual environment's bin/.
_bin = str(Path(sys.executable).parent)
if _bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")

# Under pytest-xdist (devtools/run-tests.sh runs one worker per core) each worker keeps to one CPU thread, so the
# workers do not oversubscribe the cores: OpenMM's CPU platform and torch read these before they start.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OPENMM_CPU_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

# A Context made without a platform gets OpenMM's CPU platform, as on a machine without OpenCL: the OpenCL tests
# install pocl (an OpenCL runtime on the CPU, where its kernel compiles cost seconds per Context) when it is missing.
os.environ.setdefault("OPENMM_DEFAULT_PLATFORM", "CPU")

from openmm_cgml.testing import has_openff, requires_ambertools, requires_openff  # noqa: E402,F401

# The longest test files first, so that under pytest-xdist (--dist loadfile) they do not start last and leave one
# worker running alone at the end; the order inside each file is kept.
_LONG_FIRST = ("test_temperature_study.py", "test_polymer_workflow.py", "test_demo.py", "test_thermostat.py",
               "test_ibi_lj.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
