"""GPU readiness: CG simulation speed on OpenMM's CUDA platform at 10^3 to 10^5 beads, and training on the GPU.

On a machine whose OpenMM has a working CUDA platform (a Context can be created on a device), at each size of
``--sizes`` (beads; three-bead A-B-A molecules, rounded to whole molecules) it measures ns/day of

- ``neural_graphs_off`` / ``neural_graphs_on``: the neural CG force field as a TorchForce (``NeuralForceTerm``,
  backend ``"torch"``, priors as OpenMM forces) with OpenMM-Torch's CUDA graphs off and on.  The model is
  ``bench_neural.py``'s production architecture, temperature-free and untrained (its speed does not depend on its
  weights), in ``bench_neural.tmp_system``'s boxes of the 2,3,4-trimethylpentane liquid density;
- ``tabulated_default`` / ``tabulated_slot``: ``bench_pair_layout.py``'s IBI-style model (tabulated pair tables,
  1.2 nm cutoff, harmonic bonds and angles) with ``TabulatedPairPotential``'s default layout (``"auto"``, whose
  choice is recorded) and with ``layout="slot"``; where the default is the slot layout the System is timed once;
- ``tabulated_compiled``: the same model with ``layout="compiled"`` (the C++ ``CGPairTableForce``), whose device
  kernel (common compute API, ``CGPairTableCommon.cpp``) runs on the CUDA platform when OpenMM has one to build it
  against; whether it ran on the device or on the host is recorded (``compiled_on_device``, and the probe's
  ``compiled_device_kernels`` says why not).

The arms of one size are timed round-robin in one process (``_common.interleaved``: ``--rounds`` rounds of
``--steps``-step blocks under a Langevin integrator at 5 fs, mixed precision, each block ended by reading the
energy so the device has finished; medians and spread; the machine's load recorded).  An arm that runs out of
memory is skipped with a message and the skip recorded.  ``neural_graphs_on`` failing where ``neural_graphs_off``
runs is recorded as unsupported (the model cannot be captured in a CUDA graph).  Any other failure of an arm (an
OpenMM-Torch without CUDA kernels, say) is recorded with its error, and the script exits 1 after writing the
figures of the other arms.

Training: ``ForceMatchingTrainer`` has no device option (it trains on the CPU), so the GPU figure is the trainer's
per-batch maths driven directly: ``accumulate_force_loss`` with cached neighbour pairs and an Adam step over an
epoch of random frames of the same liquid, on CUDA tensors, timed round-robin against the same epoch on the CPU
(frames/s, at the ``--train-beads`` frame sizes).

Without CUDA (no OpenMM CUDA platform, or no device) it prints "no CUDA platform/device: skipped", writes nothing
and exits 0.  ``--platform-check-only`` prints what it found (OpenMM's platforms and plugin load failures, the
device, the driver, torch's CUDA) and exits.  Results, with the device name, driver and CUDA versions and the
torch / OpenMM / OpenMM-Torch versions, go to ``benchmarks/results/bench_gpu.json``.

Usage: python benchmarks/bench_gpu.py [--sizes 1000 10000 100000] [--steps 200] [--rounds 5] [--platform-check-only]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, load_average, write_result  # noqa: E402

SKIP_MESSAGE = "no CUDA platform/device: skipped"
TIMESTEP_FS = 5.0
TEMPERATURE = 300.0
#: Steps run after minimisation before timing (OpenMM-Torch's CUDA-graph capture and warm-up happen here).
WARMUP_STEPS = 20
#: Frames of the training epoch and frames per optimiser step.
TRAIN_FRAMES = 64
TRAIN_BATCH = 16
OPENMM_TORCH_DISTRIBUTIONS = ("openmmtorch", "openmm-torch", "acellera-openmmtorch", "acellera-openmmtorch-cpu")


# ----------------------------------------------------------------------------- what the machine offers
def _openmm_torch_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for name in OPENMM_TORCH_DISTRIBUTIONS:
        try:
            return f"{version(name)} ({name})"
        except PackageNotFoundError:
            continue
    try:
        from openmm_cgml.forces._openmmtorch import import_openmmtorch

        import_openmmtorch("")
        return "installed, version unknown (no package metadata)"
    except Exception:  # noqa: BLE001 - absent or broken: reported as absent
        return None


def _nvidia_smi() -> dict:
    """Name, driver and memory of each GPU from ``nvidia-smi`` (empty without it)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": repr(exc)}
    if out.returncode:
        return {"error": (out.stderr or out.stdout).strip()[-500:]}
    gpus = [dict(zip(("name", "driver_version", "memory_total"), (x.strip() for x in line.split(","))))
            for line in out.stdout.strip().splitlines() if line.strip()]
    return {"gpus": gpus}


def _torch_cuda() -> dict:
    try:
        import torch
    except ImportError as exc:
        return {"available": False, "reason": repr(exc)}
    info = {"version": torch.__version__, "cuda_runtime": torch.version.cuda, "available": torch.cuda.is_available()}
    if not info["available"]:
        info["reason"] = "torch.cuda.is_available() is False" + ("" if torch.version.cuda else " (a CPU build)")
        return info
    props = torch.cuda.get_device_properties(0)
    info.update(device_count=torch.cuda.device_count(), device_name=props.name,
                compute_capability=f"{props.major}.{props.minor}", memory_gib=props.total_memory / 2**30,
                cudnn=torch.backends.cudnn.version())
    driver = getattr(torch._C, "_cuda_getDriverVersion", None)
    if driver is not None:
        try:
            v = int(driver())
            info["driver_cuda_api"] = f"{v // 1000}.{v % 1000 // 10}"
        except Exception:  # noqa: BLE001 - informational only
            pass
    return info


def probe(full: bool = False) -> dict:
    """What this machine offers: OpenMM's platforms (and the plugins that failed to load), whether a Context can
    be created on the CUDA platform (``cuda``; its device properties, or the ``reason`` why not), torch's CUDA, the
    driver (``nvidia-smi``) and the versions that matter.  Without CUDA in OpenMM it stops there (only OpenMM is
    imported: the skip is quick) unless ``full``."""
    import openmm

    found = {"openmm": openmm.version.full_version,
             "openmm_platforms": [openmm.Platform.getPlatform(i).getName()
                                  for i in range(openmm.Platform.getNumPlatforms())],
             "openmm_plugin_load_failures": [str(x)[:300] for x in openmm.Platform.getPluginLoadFailures()][:8],
             "cuda": False}
    if "CUDA" not in found["openmm_platforms"]:
        found["reason"] = "OpenMM has no CUDA platform"
    else:
        platform = openmm.Platform.getPlatformByName("CUDA")
        system = openmm.System()
        system.addParticle(1.0)
        try:
            context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform, {"Precision": "mixed"})
            found["cuda"] = True
            found["openmm_cuda_properties"] = {}
            for name in platform.getPropertyNames():
                try:
                    found["openmm_cuda_properties"][name] = platform.getPropertyValue(context, name)
                except Exception:  # noqa: BLE001 - a property this platform version does not report
                    continue
            del context
        except Exception as exc:  # noqa: BLE001 - no device, a driver too old, ...: the reason is reported
            found["reason"] = f"OpenMM's CUDA platform cannot create a Context: {exc}"
    if not (found["cuda"] or full):
        return found
    found["nvidia_smi"] = _nvidia_smi()
    found["torch"] = _torch_cuda()
    found["openmm_torch"] = _openmm_torch_version()
    from openmm_cgml.models import nnpops_available

    found["nnpops_available"] = nnpops_available()
    from openmm_cgml.forces import compiled

    found["compiled_device_kernels"] = (compiled.device_kernels() if compiled.available()
                                        else {"all": compiled.unavailable_reason()})
    return found


# ----------------------------------------------------------------------------- systems (pure helpers, tested)
def molecules(n_beads: int) -> int:
    """Three-bead molecules of about ``n_beads`` beads (at least one)."""
    return max(1, round(n_beads / 3))


def neural_system(n_beads: int, workdir: Path, *, use_cuda_graphs: bool = False):
    """``(System, positions (nm), CGTopology)`` of the untrained neural model (bench_neural's architecture and
    priors, temperature-free) as a TorchForce, in a cubic box of the liquid's density (``bench_neural.tmp_system``).
    The bundle is saved to ``workdir`` (one per size: a bundle is bound to its system's mapping)."""
    from bench_neural import _system, make_model, tmp_system

    from openmm_cgml.forces.neural import NeuralForceTerm
    from openmm_cgml.models import save_bundle

    info, positions, _ = tmp_system(molecules(n_beads))
    bundle = Path(workdir) / f"bench_gpu_{info.n_beads}.cgml"
    if not bundle.exists():
        save_bundle(bundle, make_model(info), info)
    term = NeuralForceTerm(bundle, backend="torch", use_cuda_graphs=use_cuda_graphs)
    return _system(info, term), positions, info


def tabulated_systems(n_beads: int):
    """``(CGTopology, positions (nm), {"default": System, "slot": System[, "compiled": System]}, default layout)``:
    bench_pair_layout's tabulated model with ``TabulatedPairPotential``'s default layout, with ``layout="slot"`` and,
    where the C++ plugin builds, with ``layout="compiled"`` (the same tables)."""
    from bench_pair_layout import model

    from openmm_cgml.forces import compiled
    from openmm_cgml.forces.tabulated import TabulatedPairPotential
    from openmm_cgml.potential import CGPotential

    topology, positions, potentials = model(molecules(n_beads))
    slot = potentials["slot"]
    pair, *bonded = slot.terms
    default = TabulatedPairPotential(pair.tables, cutoff=pair.cutoff, spacing=pair.spacing,
                                     exclusions=pair.exclusions, name=pair.name)
    layout = default.resolved_layout(topology)
    systems = {"default": CGPotential([default, *bonded]).createSystem(topology), "slot": slot.createSystem(topology)}
    if layout != "compiled" and compiled.available():
        own = TabulatedPairPotential(pair.tables, cutoff=pair.cutoff, spacing=pair.spacing, exclusions=pair.exclusions,
                                     name=pair.name, layout="compiled")
        systems["compiled"] = CGPotential([own, *bonded]).createSystem(topology)
    return topology, positions, systems, layout


def make_context(system, positions, platform: str = "CUDA", *, dt_fs: float = TIMESTEP_FS, minimise: bool = True):
    """A Context of ``system`` on ``platform`` (mixed precision where the platform has precisions, one thread on the
    CPU platform) under a Langevin integrator (1 /ps, ``TEMPERATURE``), minimised, velocities set."""
    import openmm

    chosen = openmm.Platform.getPlatformByName(platform)
    properties = {}
    if "Precision" in chosen.getPropertyNames():
        properties["Precision"] = "mixed"
    if platform == "CPU":
        properties["Threads"] = "1"
    integrator = openmm.LangevinMiddleIntegrator(TEMPERATURE, 1.0, dt_fs * 1e-3)
    integrator.setRandomNumberSeed(1)
    context = openmm.Context(system, integrator, chosen, properties)
    context.setPositions(positions)
    if minimise:
        openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    context.setVelocitiesToTemperature(TEMPERATURE, 1)
    return context, integrator


def potential_energy(context) -> float:
    """kJ/mol (reading it also waits for the platform to finish)."""
    from openmm import unit

    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def ns_per_day(seconds_per_step: float, dt_fs: float = TIMESTEP_FS) -> float:
    return dt_fs * 1e-6 / seconds_per_step * 86400.0


def is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text
            or "cuda_error_out_of_memory" in text)


def _free_device_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


class Arm:
    """One timed simulation: a block is ``steps`` steps then an energy read.  A failure while timing is kept (the
    arm then does nothing) so the other arms of the round-robin go on."""

    def __init__(self, context, integrator, steps: int):
        self.context, self.integrator, self.steps = context, integrator, steps
        self.error: BaseException | None = None
        self.last_energy = math.nan

    def block(self) -> None:
        if self.error is not None:
            return
        try:
            self.integrator.step(self.steps)
            self.last_energy = potential_energy(self.context)
        except Exception as exc:  # noqa: BLE001 - recorded for this arm
            self.error = exc


# ----------------------------------------------------------------------------- simulation speed
def bench_size(n_beads: int, steps: int, rounds: int, workdir: Path, neural_reason: str | None,
               platform: str = "CUDA") -> tuple[dict, dict]:
    """Time every arm at one size; returns ``(row, errors)`` (errors: arm -> message of a non-memory failure)."""
    n_mol = molecules(n_beads)
    row: dict = {"beads": 3 * n_mol, "molecules": n_mol, "arms": {}, "skipped": {}}
    errors: dict[str, str] = {}
    builders = {}
    if neural_reason is None:
        for graphs in (False, True):
            builders[f"neural_graphs_{'on' if graphs else 'off'}"] = (
                lambda graphs=graphs: neural_system(n_beads, workdir, use_cuda_graphs=graphs)[:2])
    else:
        for name in ("neural_graphs_off", "neural_graphs_on"):
            row["skipped"][name] = neural_reason
    try:
        _, tab_positions, tab_systems, layout = tabulated_systems(n_beads)
        row["default_layout"] = layout
        builders["tabulated_default"] = lambda: (tab_systems["default"], tab_positions)
        if layout != "slot":
            builders["tabulated_slot"] = lambda: (tab_systems["slot"], tab_positions)
        else:  # the same System: timed once, its figures are tabulated_default's
            row["tabulated_slot_is_default"] = True
        if "compiled" in tab_systems:
            builders["tabulated_compiled"] = lambda: (tab_systems["compiled"], tab_positions)
    except Exception as exc:  # noqa: BLE001 - recorded
        _record_failure(row, errors, "tabulated", exc, "building the systems")
    arms: dict[str, Arm] = {}
    for name, build in builders.items():
        t0 = time.perf_counter()
        context = integrator = None
        try:
            system, positions = build()
            context, integrator = make_context(system, positions, platform)
            integrator.step(WARMUP_STEPS)
            energy = potential_energy(context)
        except Exception as exc:  # noqa: BLE001 - recorded per arm
            _record_failure(row, errors, name, exc, "setting up")
            context = integrator = None  # release the device memory before the next arm
            _free_device_memory()
            continue
        arms[name] = Arm(context, integrator, steps)
        if name == "tabulated_compiled" or (name == "tabulated_default" and layout == "compiled"):
            row["compiled_on_device"] = _compiled_on_device(context)
        row["arms"][name] = {"setup_s": time.perf_counter() - t0, "energy_after_warmup_kJ_per_mol": energy}
        print(f"{row['beads']} beads, {name}: ready in {time.perf_counter() - t0:.1f} s", flush=True)
    if arms:
        _reset_peak_memory()
        load_before = load_average()
        timed = interleaved({name: (arm.block, steps) for name, arm in arms.items()}, rounds, spread=True)
        row["load_average"] = [load_before, load_average()]
        row["torch_peak_memory_gib"] = _peak_memory_gib()
        for name, arm in arms.items():
            if arm.error is not None:
                del row["arms"][name]
                _record_failure(row, errors, name, arm.error, "timing")
                continue
            t = timed[name]
            row["arms"][name].update(
                ms_per_step=1e3 * t["median"], ms_per_step_spread=[1e3 * t["min"], 1e3 * t["max"]],
                ns_per_day=ns_per_day(t["median"]), ns_per_day_spread=[ns_per_day(t["max"]), ns_per_day(t["min"])],
                final_energy_kJ_per_mol=arm.last_energy, finite_energy=math.isfinite(arm.last_energy))
    got = row["arms"]
    if "neural_graphs_off" in got and "neural_graphs_on" in errors:
        # the model runs, but not under CUDA graphs: a finding about the model, not a failure of the benchmark
        row.setdefault("unsupported", {})["neural_graphs_on"] = row["errors"].pop("neural_graphs_on")
        errors.pop("neural_graphs_on")
        if not row["errors"]:
            del row["errors"]
        print(f"{row['beads']} beads: the model does not run under CUDA graphs (recorded as unsupported)", flush=True)
    if "neural_graphs_off" in got and "neural_graphs_on" in got:
        row["cuda_graphs_speedup"] = got["neural_graphs_off"]["ms_per_step"] / got["neural_graphs_on"]["ms_per_step"]
    if "tabulated_default" in got and "tabulated_slot" in got:
        row["default_over_slot"] = got["tabulated_default"]["ms_per_step"] / got["tabulated_slot"]["ms_per_step"]
    best_neural = [got[k]["ms_per_step"] for k in ("neural_graphs_off", "neural_graphs_on") if k in got]
    if best_neural and "tabulated_default" in got:
        row["neural_over_tabulated"] = min(best_neural) / got["tabulated_default"]["ms_per_step"]
    for arm in arms.values():
        arm.context = arm.integrator = None
    arms.clear()
    _free_device_memory()
    summary = {k: round(v["ns_per_day"], 1) for k, v in got.items() if "ns_per_day" in v}
    print(f"{row['beads']} beads: ns/day {summary}; skipped {sorted(row['skipped'])}; failed {sorted(errors)}",
          flush=True)
    return row, errors


def _compiled_on_device(context) -> bool | None:
    """Whether the Context's compiled pair force runs on the device (None: no compiled force in it)."""
    from openmm_cgml.forces import compiled

    system = context.getSystem()
    for i in range(system.getNumForces()):
        if compiled.is_pair_force(system.getForce(i)):
            return compiled.runs_on_device(system.getForce(i), context)
    return None


def _record_failure(row: dict, errors: dict, name: str, exc: BaseException, when: str) -> None:
    if is_out_of_memory(exc):
        row["skipped"][name] = f"out of memory while {when}: {str(exc)[:300]}"
        print(f"{row['beads']} beads, {name}: out of memory while {when}: skipped", flush=True)
    else:
        errors[name] = f"{when}: {exc!r}"[:2000]
        row.setdefault("errors", {})[name] = errors[name]
        print(f"{row['beads']} beads, {name}: FAILED while {when}: {exc!r}"[:2000], flush=True)


def _reset_peak_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    except ImportError:
        pass


def _peak_memory_gib() -> float | None:
    try:
        import torch

        return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    except ImportError:
        return None


# ----------------------------------------------------------------------------- training
def training_epoch(n_beads: int, device: str, *, frames: int = TRAIN_FRAMES, batch: int = TRAIN_BATCH, seed: int = 0):
    """A function running one force-matching epoch as the trainer's batches do (``accumulate_force_loss`` over
    cached neighbour pairs, an Adam step per ``batch`` frames) on ``device``, over ``frames`` random frames of
    ``n_beads``-bead liquid boxes (bench_neural's model and box); and a description of the data."""
    import numpy as np
    import torch
    from bench_neural import make_model, tmp_system

    from openmm_cgml.training import ForceData, PairCache, accumulate_force_loss

    dev = torch.device(device)
    info, positions, box = tmp_system(molecules(n_beads))
    gen = torch.Generator().manual_seed(seed)
    pos = torch.tensor(positions, dtype=torch.float32).expand(frames, -1, -1) + 0.02 * torch.randn(
        frames, len(positions), 3, generator=gen)
    boxes = torch.tensor(info.box_vectors, dtype=torch.float32).expand(frames, 3, 3).contiguous()
    forces = 50.0 * torch.randn(frames, len(positions), 3, generator=gen)
    topology = info.replace(box_vectors=None)
    model = make_model(info).to(dev)
    model.train()
    cache = PairCache(ForceData(pos, forces, boxes, topology), model.cutoff)  # searched once, on the CPU
    cache.pairs = [p.to(dev) for p in cache.pairs]
    cache.shifts = [s.to(dev) for s in cache.shifts]
    data = ForceData(pos.to(dev), forces.to(dev), boxes.to(dev), topology)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    order = np.arange(frames)

    def epoch():
        for start in range(0, frames, batch):
            opt.zero_grad()
            accumulate_force_loss(model, data, order[start:start + batch], pair_cache=cache)
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    described = {"beads_per_frame": info.n_beads, "box_nm": float(box), "frames": frames, "batch": batch,
                 "pairs_per_frame": float(np.mean([p.shape[1] for p in cache.pairs]))}
    return epoch, described


def bench_training(beads: list[int], rounds: int, devices=("cuda", "cpu"), frames: int = TRAIN_FRAMES,
                   batch: int = TRAIN_BATCH) -> tuple[dict, dict]:
    """Frames/s of a training epoch on each of ``devices`` (timed round-robin) at each frame size."""
    import torch

    out, errors = {}, {}
    for n in beads:
        row: dict = {}
        calls = {}
        for device in devices:
            try:
                fn, described = training_epoch(n, device, frames=frames, batch=batch)
                fn()  # first pass: TorchScript-free, but CUDA kernels load here
            except Exception as exc:  # noqa: BLE001 - recorded per device
                if is_out_of_memory(exc):
                    row.setdefault("skipped", {})[device] = f"out of memory: {str(exc)[:300]}"
                else:
                    errors[f"training_{n}_{device}"] = repr(exc)[:2000]
                    row.setdefault("errors", {})[device] = repr(exc)[:2000]
                print(f"training, {n} beads per frame, {device}: failed: {exc!r}"[:2000], flush=True)
                _free_device_memory()
                continue
            row.update(described)
            calls[device] = (fn, described["frames"])
        if calls:
            load_before = load_average()
            timed = interleaved(calls, rounds, spread=True)
            row["load_average"] = [load_before, load_average()]
            for device, t in timed.items():
                row[f"{device}_frames_per_s"] = 1.0 / t["median"]
                row[f"{device}_frames_per_s_spread"] = [1.0 / t["max"], 1.0 / t["min"]]
            if "cuda" in timed and "cpu" in timed:
                row["gpu_speedup"] = timed["cpu"]["median"] / timed["cuda"]["median"]
        row["cpu_threads"] = torch.get_num_threads()
        out[str(row.get("beads_per_frame", 3 * molecules(n)))] = row
        print(f"training, {n} beads per frame: {row}", flush=True)
        calls.clear()
        _free_device_memory()
    return out, errors


def trainer_supports_device() -> bool:
    """Whether ``ForceMatchingTrainer`` / ``TrainingConfig`` take a device (they do not when this was written)."""
    import inspect

    from openmm_cgml.training import ForceMatchingTrainer
    from openmm_cgml.training.config import TrainingConfig

    fields = getattr(TrainingConfig, "model_fields", None) or getattr(TrainingConfig, "__dataclass_fields__", {})
    return "device" in inspect.signature(ForceMatchingTrainer.__init__).parameters or "device" in fields


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000],
                        help="system sizes in beads (rounded to whole three-bead molecules)")
    parser.add_argument("--steps", type=int, default=200, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="round-robin rounds (medians and spread over them)")
    parser.add_argument("--train-beads", type=int, nargs="*", default=[192, 1536],
                        help="beads per training frame (none: no training figures)")
    parser.add_argument("--platform-check-only", action="store_true",
                        help="print what was found (platforms, device, driver, versions) and exit")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.rounds < 1 or any(n < 3 for n in args.sizes):
        parser.error("--steps and --rounds must be positive and every size at least 3 beads")
    found = probe(full=args.platform_check_only)
    if args.platform_check_only:
        print(json.dumps(found, indent=1, default=str))
        print(f"CUDA: usable ({found['openmm_cuda_properties'].get('DeviceName', '?')})" if found["cuda"]
              else f"{SKIP_MESSAGE} ({found['reason']})")
        return 0
    if not found["cuda"]:
        print(f"{SKIP_MESSAGE} ({found['reason']})")
        return 0
    torch_info = found["torch"]
    neural_reason = None
    if found["openmm_torch"] is None:
        neural_reason = "OpenMM-Torch is not installed"
    elif not torch_info.get("available"):
        neural_reason = f"torch has no CUDA: {torch_info.get('reason')}"
    print(f"CUDA device: {found['openmm_cuda_properties'].get('DeviceName', '?')}; torch CUDA: "
          f"{torch_info.get('available')}; OpenMM-Torch: {found['openmm_torch']}", flush=True)
    t_start = time.perf_counter()
    errors: dict[str, str] = {}
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        for n in args.sizes:
            row, errs = bench_size(n, args.steps, args.rounds, Path(tmp), neural_reason)
            sizes[str(row["beads"])] = row
            errors.update({f"{row['beads']}:{k}": v for k, v in errs.items()})
    training: dict = {}
    if args.train_beads and torch_info.get("available"):
        training, errs = bench_training(args.train_beads, args.rounds)
        errors.update(errs)
    elif args.train_beads:
        training = {"skipped": f"torch has no CUDA: {torch_info.get('reason')}"}
    from bench_neural import ARCH
    from bench_pair_layout import CUTOFF, DENSITY

    figures = {"sizes": sizes, "training": training, "errors": errors}
    settings = {
        "platform": "CUDA", "precision": "mixed", "steps_per_block": args.steps, "rounds": args.rounds,
        "warmup_steps": WARMUP_STEPS, "timestep_fs": TIMESTEP_FS, "temperature_K": TEMPERATURE,
        "timestep_note": "the same timestep for every arm, not a stability-scanned one: ns/day scale with it",
        "integrator": "LangevinMiddle, 1 /ps; every block ends with an energy read (waits for the device)",
        "timing": "arms of one size timed round-robin (_common.interleaved): medians, spread = [min, max]",
        "neural_model": ("untrained CGSchNet, bench_neural.ARCH, temperature-free, torch seed 0 (speed does not depend "
                         "on the weights); NeuralForceTerm backend 'torch', priors in OpenMM, exact filters, "
                         "neighbor_search 'auto'; 2,3,4-trimethylpentane liquid density (bench_neural.tmp_system)"),
        "architecture": ARCH,
        "tabulated_model": (f"bench_pair_layout.model: 3 LJ-like pair tables, cutoff {CUTOFF} nm, harmonic bonds and "
                            f"angles, {DENSITY:.3g} beads/nm^3; layouts 'auto' (the default; choice per size in "
                            "default_layout) and 'slot'"),
        "training": (f"ForceMatchingTrainer takes no device (supports_device={trainer_supports_device()}): the "
                     "trainer's per-batch maths (accumulate_force_loss with a PairCache, Adam) driven directly on "
                     f"CUDA tensors vs the CPU, {TRAIN_FRAMES} random frames per epoch, {TRAIN_BATCH} per step"),
        "gpu": {k: v for k, v in found.items() if k not in ("cuda",)},
        "wall_s": time.perf_counter() - t_start,
    }
    write_result("bench_gpu", figures, settings)
    if errors:
        print(f"FAILED arms ({len(errors)}): {sorted(errors)}; their errors are in the results file", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
