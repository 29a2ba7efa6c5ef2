"""``platform: auto``: the fastest installed OpenMM platform, where an OpenCL runtime on the CPU (pocl) does not count
as fast (it is slower there than OpenMM's CPU platform)."""

import openmm
import pytest

from openmm_cgml.reference import run


@pytest.mark.parametrize("text, cpu", [
    ("Portable Computing Language cpu-haswell-Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", True),
    ("Portable Computing Language pthread-AMD EPYC 7763 64-Core Processor", True),
    ("Intel(R) CPU Runtime for OpenCL(TM) Applications Intel(R) Xeon(R) Gold 6248", True),
    ("NVIDIA CUDA NVIDIA H200", False),
    ("AMD Accelerated Parallel Processing gfx90a:sramecc+:xnack-", False),
    ("Intel(R) OpenCL Graphics Intel(R) Arc(TM) A770 Graphics", False),
])
def test_opencl_names(text, cpu):
    assert run.opencl_names_say_cpu(text) is cpu


class _Platform:
    def __init__(self, name):
        self.name = name

    def getName(self):
        return self.name


@pytest.mark.parametrize("installed, opencl_on_cpu, expected", [
    (["Reference", "CPU", "OpenCL"], True, "CPU"),
    (["Reference", "CPU", "OpenCL"], False, "OpenCL"),
    (["Reference", "CPU", "OpenCL", "CUDA"], True, "CUDA"),
    (["Reference", "CPU"], True, "CPU"),
    (["Reference"], True, "Reference"),
])
def test_auto_skips_an_opencl_runtime_on_the_cpu(monkeypatch, installed, opencl_on_cpu, expected):
    platforms = [_Platform(n) for n in installed]
    monkeypatch.setattr(openmm.Platform, "getNumPlatforms", staticmethod(lambda: len(platforms)))
    monkeypatch.setattr(openmm.Platform, "getPlatform", staticmethod(lambda i: platforms[i]))
    monkeypatch.setattr(openmm.Platform, "getPlatformByName",
                        staticmethod(lambda name: next(p for p in platforms if p.getName() == name)))
    monkeypatch.setattr(run, "opencl_runs_on_cpu", lambda: opencl_on_cpu)
    assert run.choose_platform("auto").getName() == expected
    if "OpenCL" in installed:  # named, it is used whatever it runs on
        assert run.choose_platform("OpenCL").getName() == "OpenCL"


def test_the_probe_on_this_machine():
    """Without an OpenCL platform (or one that cannot make a context) the probe says 'not a GPU'; with one, it names
    what the context ran on."""
    names = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    result = run.opencl_runs_on_cpu.__wrapped__()
    if "OpenCL" not in names:
        assert result is True
    else:
        assert result in (True, False)
        assert run.choose_platform("auto").getName() in ({"CUDA", "CPU"} if result else {"CUDA", "OpenCL"})
