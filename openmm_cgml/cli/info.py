"""``cgml info`` (also ``python -m openmm_cgml``): the version and what this installation can use.

Like ``python -m openmm.testInstallation`` it does not stop at imports: OpenMM's platforms are listed as
OpenMM reports them, and openmm-torch's ``TorchForce`` is evaluated once on the Reference platform in a child
process (a build whose libtorch does not match crashes at the first force evaluation, not at import; the
child's crash is reported instead of taking this report down with it).
"""

from __future__ import annotations

import importlib
import json
import platform
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

#: Optional components: (name, what it gives, distributions that provide it, module to import).
OPTIONAL = (
    ("openmm-torch", "neural CG models as a TorchForce (else openmm.PythonForce)",
     ("openmmtorch", "acellera-openmmtorch-cpu", "acellera-openmmtorch-cu13"), "openmmtorch"),
    ("NNPOps", "fused neighbour-list kernels for the neural model (same numbers as the PyTorch path)",
     ("nnpops",), "NNPOps"),
    ("OpenFF toolkit", "all-atom references from SMILES (cgml reference, the demo, OpenFF sweeps)",
     ("openff-toolkit", "acellera-openff-toolkit"), "openff.toolkit"),
    ("dask-jobqueue", "sweeps on SLURM or PBS clusters (cgml sweep with cluster: slurm|pbs)",
     ("dask-jobqueue",), "dask_jobqueue"),
    ("freud", "not used by this version (its RDFs and neighbour searches are NumPy/SciPy k-d trees)",
     ("freud-analysis",), "freud"),
)

#: Programs looked up on PATH: (name, what needs it).
PROGRAMS = (
    ("antechamber", "AM1-BCC charges (AmberTools)"),
    ("sqm", "AM1-BCC charges (AmberTools)"),
    ("packmol", "packing liquid boxes"),
)

_TORCHFORCE_CHECK = """
import json, torch, openmm
from openmm_cgml.forces._openmmtorch import import_openmmtorch
openmmtorch = import_openmmtorch("openmm-torch is not installed")

class Spring(torch.nn.Module):
    def forward(self, positions):
        return (positions.to(torch.float64) ** 2).sum()

system = openmm.System()
system.addParticle(1.0)
system.addForce(openmmtorch.TorchForce(torch.jit.trace(Spring(), torch.zeros(1, 3, dtype=torch.float64))))
context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
context.setPositions([openmm.Vec3(0.1, 0.2, 0.3)])
state = context.getState(getEnergy=True, getForces=True)
kj = openmm.unit.kilojoule_per_mole
energy = state.getPotentialEnergy().value_in_unit(kj)
force = state.getForces(asNumpy=True).value_in_unit(kj / openmm.unit.nanometer)[0].tolist()
print(json.dumps({"energy": energy, "force": force}))
"""


def _version_of(distributions) -> str | None:
    for name in distributions:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def _importable(module: str) -> tuple[bool, str]:
    try:
        if module == "openmmtorch":
            from ..forces._openmmtorch import import_openmmtorch

            import_openmmtorch("openmm-torch is not installed")
        else:
            importlib.import_module(module)
    except Exception as exc:  # an installed but broken component is reported, not raised
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


def _program(name: str) -> dict:
    """Where ``name`` is on PATH; else whether it sits beside this interpreter (a venv whose bin/ is not on PATH)."""
    on_path = shutil.which(name)
    if on_path:
        return {"path": on_path, "on_path": True}
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return {"path": str(beside), "on_path": False}
    return {"path": None, "on_path": False}


def check_torchforce(timeout: float = 180.0) -> dict:
    """Evaluate a TorchForce (E = |x|^2 of one particle) in a child process; the result says whether it works."""
    try:
        proc = subprocess.run([sys.executable, "-c", _TORCHFORCE_CHECK], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"works": False, "detail": f"no answer within {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return {"works": False, "detail": f"crashed (exit status {proc.returncode}): {tail}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    expected_energy, expected_force = 0.14, [-0.2, -0.4, -0.6]
    ok = abs(result["energy"] - expected_energy) < 1e-9 and all(
        abs(a - b) < 1e-9 for a, b in zip(result["force"], expected_force))
    detail = "energy and force exact" if ok else f"wrong numbers: {result} (expected E = 0.14, F = -2x)"
    return {"works": ok, "detail": detail}


def installation_report(*, torchforce: bool = True) -> dict:
    """What this installation has: versions, OpenMM platforms, torch devices, optional components, programs."""
    import openmm
    import torch

    from .. import __version__

    platforms = [openmm.Platform.getPlatform(i) for i in range(openmm.Platform.getNumPlatforms())]
    report = {
        "openmm_cgml": __version__,
        "python": platform.python_version(),
        "machine": platform.platform(),
        "openmm": openmm.__version__,
        "openmm_platforms": {p.getName(): p.getSpeed() for p in platforms},
        "torch": torch.__version__,
        "cuda": {"torch": torch.cuda.is_available(),
                 "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                 "openmm": "CUDA" in {p.getName() for p in platforms}},
        "optional": {},
        "programs": {name: _program(name) for name, _ in PROGRAMS},
    }
    for name, purpose, distributions, module in OPTIONAL:
        found, problem = _importable(module)
        if name == "NNPOps" and found:
            from ..models.neighbors import nnpops_available

            found = nnpops_available()
            problem = "" if found else "imports, but its neighbour op is not registered"
        entry = {"found": found, "version": _version_of(distributions), "for": purpose}
        if problem and entry["version"]:  # installed, but it does not work
            entry["problem"] = problem
        report["optional"][name] = entry
    if torchforce and report["optional"]["openmm-torch"]["found"]:
        report["optional"]["openmm-torch"]["evaluation"] = check_torchforce()
    from ..forces import compiled

    ok = compiled.available()
    report["compiled_pair_force"] = {"available": ok, "library": str(compiled.library_path()) if ok else None,
                                     "problem": None if ok else compiled.unavailable_reason(),
                                     "device_kernels": compiled.device_kernels() if ok else {},
                                     "network_simd": compiled.simd() if ok else None}
    return report


def format_report(report: dict) -> str:
    lines = [f"openmm_cgml {report['openmm_cgml']} (Python {report['python']}, {report['machine']})", "",
             f"OpenMM {report['openmm']}; platforms (speed):"]
    lines += [f"  {name} ({speed:g})" for name, speed in report["openmm_platforms"].items()]
    cuda = report["cuda"]
    devices = ", ".join(cuda["devices"]) or "no device"
    lines += [f"PyTorch {report['torch']}; CUDA for torch: {'yes' if cuda['torch'] else 'no'} ({devices}); "
              f"CUDA platform for OpenMM: {'yes' if cuda['openmm'] else 'no'}", "", "Optional components:"]
    for name, entry in report["optional"].items():
        state = f"found ({entry['version'] or 'version unknown'})" if entry["found"] else "not found"
        lines.append(f"  {name:15s} {state}: {entry['for']}")
        if entry.get("problem"):
            lines.append(f"  {'':15s} {entry['problem']}")
        if "evaluation" in entry:
            ev = entry["evaluation"]
            lines.append(f"  {'':15s} TorchForce on the Reference platform: "
                         f"{'works' if ev['works'] else 'FAILS'} ({ev['detail']})")
    pair = report["compiled_pair_force"]
    lines += ["", "Compiled forces (tabulated pair tables, SchNet networks on the CPU): "
              + (f"built ({pair['library']})" if pair["available"] else f"NOT available, {pair['problem']}; "
                 "tabulated models use OpenMM's custom forces, networks TorchForce")]
    if pair.get("network_simd"):
        lines.append(f"  SchNet networks on the CPU: {pair['network_simd']} code (CGML_SIMD=generic|avx2|auto)")
    for gpu, why in pair.get("device_kernels", {}).items():
        lines.append(f"  pair tables on {gpu}: " + ("the device kernel" if why is None
                                                          else f"on the host (no device kernel: {why})"))
    lines += ["", "Programs on PATH:"]
    for name, purpose in PROGRAMS:
        where = report["programs"][name]
        if where["on_path"]:
            state = where["path"]
        elif where["path"]:
            state = f"NOT on PATH (found at {where['path']}: put {Path(where['path']).parent} on PATH)"
        else:
            state = "not found"
        lines.append(f"  {name:15s} {state}: {purpose}")
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="version, OpenMM platforms and optional components found "
                              "(also: python -m openmm_cgml)", description=__doc__)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-torchforce", dest="torchforce", action="store_false",
                   help="skip evaluating a TorchForce in a child process")
    p.set_defaults(func=run)


def run(args) -> int:
    report = installation_report(torchforce=args.torchforce)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    evaluation = report["optional"]["openmm-torch"].get("evaluation")
    return 1 if evaluation and not evaluation["works"] else 0
