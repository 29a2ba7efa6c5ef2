"""Packaging hook (everything else is in pyproject.toml): the repository's example configurations and scripts
(``examples/``) are installed with the package as ``openmm_cgml/examples/``, so that ``cgml examples`` works from
a wheel or a conda package.  An editable install reads them from the checkout instead."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

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


setup(cmdclass={"build_py": BuildPyWithExamples})
