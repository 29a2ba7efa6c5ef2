"""Packaging hooks (everything else is in pyproject.toml):

- the repository's example configurations and scripts (``examples/``) are installed with the package as
  ``openmm_cgml/examples/``, so that ``cgml examples`` works from a wheel or a conda package (an editable install
  reads them from the checkout instead);
- the C++ forces (``openmm_cgml/_plugin``: pair tables and the SchNet network) are compiled into the package
  against the OpenMM of the build environment when that environment has OpenMM and a C++ compiler (a conda
  build, or pip with ``--no-build-isolation``).  Otherwise, and after an OpenMM upgrade, they are compiled on
  first use (:mod:`openmm_cgml.forces.compiled`); without a compiler tabulated models use OpenMM's custom forces
  and neural ones TorchForce.
"""

import importlib.util
import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

#: What of examples/ is installed: configurations and scripts (not what running them writes there).
EXAMPLE_PATTERNS = ("*.yaml", "*.py", "*/*.yaml", "*/*.py", "*/*.offxml")


class BuildPyWithExamples(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        source = Path(__file__).resolve().parent / "examples"
        target = Path(self.build_lib) / "openmm_cgml" / "examples"
        for pattern in EXAMPLE_PATTERNS:
            for path in sorted(source.glob(pattern)):
                dest = target / path.relative_to(source)
                self.mkpath(str(dest.parent))
                self.copy_file(str(path), str(dest))
        self._build_plugin(Path(self.build_lib) / "openmm_cgml" / "_plugin" / "lib")

    def _build_plugin(self, target: Path) -> None:
        import subprocess
        import sys

        script = "from openmm_cgml.forces import compiled; print(compiled.build())"
        env = {**os.environ, "CGML_PLUGIN_DIR": str(target), "PYTHONPATH": str(Path(self.build_lib))}
        target.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
        if proc.returncode:
            print("openmm_cgml: the C++ pair force was not compiled at install time (it will be on first use): "
                  + (proc.stderr.strip().splitlines() or ["no reason given"])[-1])
        else:
            print(f"openmm_cgml: compiled {proc.stdout.strip()}")


def _can_compile_plugin() -> bool:
    """OpenMM in the build environment and a C++ compiler: the plugin is compiled, so the wheel is binary."""
    return importlib.util.find_spec("openmm") is not None and shutil.which(os.environ.get("CXX", "c++")) is not None


class MaybeBinaryDistribution(Distribution):
    """A wheel that carries the compiled plugin is tagged for this platform and Python (not py3-none-any)."""

    def has_ext_modules(self):
        return _can_compile_plugin()


setup(cmdclass={"build_py": BuildPyWithExamples}, distclass=MaybeBinaryDistribution)
