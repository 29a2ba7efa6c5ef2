"""Polymer melts end to end (``cgml polymer``): AA melt of an oligomer, repeat-unit mapping, IBI and neural CG
models compared with AA on chain structure, thermodynamics and dynamics, and transfer to longer chains.

Steps (each skipped when its output exists; the long ones resume from their checkpoints):

1. AA reference of ``count`` oligomers (``smiles``) at melt density with OpenFF, recorded with forces
   (``aa.h5``); the reference workflow warns, with the numbers, when a chain's contour length reaches the box
   length, and records whether the end-to-end vector relaxed (``chain_relaxation`` in the dataset's metadata).
2. Repeat-unit mapping (:func:`~openmm_cgml.mapping.from_repeat_unit`: a bead per ``units_per_bead`` repeat units of
   ``repeat_smarts``, chain ends merged into their beads and typed apart) of the whole dataset
   (``cg_reference.h5``, ``mapping.json``).
3. IBI: pair tables and Boltzmann-inverted bonded terms along the chain, refined each iteration (``ibi/``); the
   pair tables act on every pair but the 1-2 and 1-3 pairs along the chain (``exclusions: bonded``), so beads far
   apart along a chain keep their excluded volume, here and on the longer chains of the transfer.  With
   ``ibi_pressure_correction`` (the default) the pair tables are also corrected towards the AA melt's pressure, and
   the best iteration is the best RDF among those within ``pressure_tolerance`` of it; ``summary["ibi"]`` records
   what that cost in RDF error.
4. The IBI model run at the largest timestep whose NVE energy drift passes (``cg_run.h5``), compared with AA
   (``compare/``: RDFs, bonded distributions, chain rows, density, pressure, D).
5. Optionally the intra/inter neural model, force-matched on the mapped forces over Boltzmann priors
   (``neural/model.cgml``), run and compared alike (``neural_run.h5``, ``neural_compare/``).
   Each model is also run ``npt_duration_ps`` at the AA pressure from the end of its NVT run, and the density it
   settles at is set beside the AA melt's (``npt_ibi.json``, ``npt_neural.json``;
   :func:`~openmm_cgml.simulation.npt_density`): whether it holds the AA density within ``npt_tolerance``, or is
   still drifting, or the box evaporated.
6. Chain analysis of every run (``chains.json``): <Rg^2>, <Ree^2> with block errors, the end-to-end relaxation
   time, the MSD regimes and D of the chain centres of mass and of the monomers, and alpha of each where both runs
   are diffusive (they differ: monomers are sub-diffusive up to the chain's relaxation).
7. Transfer: each ``transfer`` target (a longer oligomer's SMILES) is mapped the same way, grown as a CG melt at
   the reference's density, run with the same force fields (``transfer/<name>/``), and, with
   ``aa_reference: true``, compared with its own AA reference (RDFs and chain rows).  ``chain_scaling.png`` plots
   <Rg^2> and <Ree^2> per bead against chain length for AA and each CG model.

Writes ``summary.json`` and ``summary.md``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..config import Density, StrictModel, Temperature, format_quantity

__all__ = ["PolymerConfig", "TransferTarget", "run_polymer", "chain_record", "check_mappings", "ibi_settings"]

logger = logging.getLogger(__name__)


class TransferTarget(StrictModel):
    """A longer oligomer the short-chain CG models are transferred to."""

    smiles: str = Field(description="SMILES of the longer oligomer")
    count: int = Field(ge=2, description="chains in the CG (and AA) box")
    name: str | None = Field(None, description="folder name under transfer/ (default: x<beads ratio>)")
    aa_reference: bool = Field(False, description="also run an AA reference of this melt and compare with it")
    aa_dataset: Path | None = Field(
        None, description="instead of aa_reference: an AA melt of these chains recorded elsewhere (a long run on a "
        "GPU, say), mapped with this workflow's mapping (a coarse-grained dataset; positions are enough), compared "
        "with as an aa_reference is; the CG runs start from its last frame in its box")
    duration_ps: float | None = Field(None, gt=0, description="length of the CG runs on these chains (default: "
                                      "cg_duration_ps; a longer chain costs more per step and relaxes more slowly)")
    models: list[Literal["ibi", "neural"]] | None = Field(
        None, min_length=1, description="which of the short chains' models run on these chains (default: all)")
    reference: dict = Field(default_factory=dict, description="with aa_reference: overrides of its AA reference's "
                            "settings over the melt's own (a longer chain relaxes more slowly: a longer production)")


class PolymerConfig(StrictModel):
    """Settings of ``cgml polymer`` (see the module's documentation)."""

    output: Path = Field(Path("polymer-output"), description="output folder")
    name: str = Field("PLY", description="residue name of the oligomer")
    smiles: str = Field(description="SMILES of the oligomer (one chain)")
    count: int = Field(32, ge=2, description="oligomers in the AA box")
    repeat_smarts: str = Field(description="SMARTS of one repeat unit of the backbone (heavy atoms)")
    units_per_bead: int = Field(1, ge=1, description="repeat units per bead")
    end_groups: Literal["merge", "bead"] = Field("merge", description="chain-end atoms outside the repeat units: "
                                                 "merged into the end beads, or beads of their own")
    density: Density = Field("0.75 g/cm**3", description="starting density of the AA melt (NPT equilibrates it)")
    packing_fraction: float | None = Field(
        0.6, gt=0, lt=1, description="pack the AA chains at this fraction of density and compress them to it before "
        "the NVT stage (rigid copies of one conformer do not pack at melt density); null: pack at density")
    temperature: Temperature = Field("400 K", description="of every run")
    forcefield: str = Field("openff-2.2.0", description="OpenFF force field of the AA reference")
    charge_method: Literal["am1bcc", "gasteiger", "mmff94", "zeros"] = Field(
        "am1bcc", description="partial charges of the AA reference")
    reference: dict = Field(default_factory=dict, description="overrides of the AA reference settings")
    ibi_pressure_correction: bool = Field(
        True, description="IBI's pressure correction towards the AA melt's pressure (the reference's barostat "
        "pressure), so that the CG melt has it at the AA density and an NPT run can hold that density; false: IBI "
        "keeps its best RDF whatever the pressure (a melt fitted so is thousands of bar off and expands at 1 bar). "
        "An ibi: {target_pressure: ...} override sets another target")
    ibi: dict = Field(default_factory=dict, description="overrides of the IBI settings")
    neural: bool = Field(True, description="also train, run and compare the neural model")
    training: dict = Field(default_factory=dict, description="overrides of the training block of train.yaml")
    model: dict = Field(default_factory=dict, description="overrides of the neural model's settings")
    cg_duration_ps: float = Field(200.0, gt=0, description="length of each CG production run")
    cg_equilibration_steps: int = Field(1000, ge=0, description="Langevin steps before each CG production")
    scan_steps: int = Field(2500, ge=250, description="steps of each timestep-scan trial")
    npt_duration_ps: float = Field(100.0, ge=0, description="length of each CG model's run at the AA pressure "
                                   "(Monte Carlo barostat) whose density is compared with the AA melt's (0: none)")
    npt_tolerance: float = Field(0.05, gt=0, description="a CG model holds the AA density when its NPT density "
                                 "settles within this fraction of it")
    transfer: list[TransferTarget] = Field(default_factory=list, description="longer oligomers to transfer to")
    platform: str = Field("auto", description="OpenMM platform (auto: the fastest; CG steps on the CPU)")
    overwrite: bool = Field(False, description="redo every step")
    seed: int = Field(0, ge=0, description="of the AA reference and the grown CG melts")

    @model_validator(mode="after")
    def _transfer_targets_agree(self):
        for t in self.transfer:
            if t.models and "neural" in t.models and not self.neural:
                raise ValueError(f"transfer target {t.name or t.smiles!r} asks for the neural model, but neural is "
                                 "false: no neural model is trained (set neural: true or drop it from models)")
            if t.reference and not t.aa_reference:
                raise ValueError(f"transfer target {t.name or t.smiles!r} has reference: overrides but no "
                                 "aa_reference: true (no AA reference is run for it)")
            if t.aa_reference and t.aa_dataset is not None:
                raise ValueError(f"transfer target {t.name or t.smiles!r} has both aa_reference: true and aa_dataset: "
                                 "give one (aa_dataset is an AA melt of the target recorded elsewhere, already mapped)")
        return self

    @property
    def cg_platform(self) -> str:
        """The OpenMM platform of the CG steps: CPU unless ``platform`` names one."""
        return "CPU" if self.platform == "auto" else self.platform

    @property
    def temperature_text(self) -> str:
        return format_quantity(self.temperature, "temperature")

    @property
    def reference_pressure(self) -> str:
        """The AA melt's barostat pressure (its reference settings' ``pressure``): IBI's target with
        ``ibi_pressure_correction`` and the pressure of every CG model's NPT run."""
        return _reference_settings(self, self.smiles, self.count, self.name)["pressure"]


def ibi_settings(c: PolymerConfig, out: Path, half_box: float) -> dict:
    """The IBI configuration of the short-chain melt in ``out`` (``cg_reference.h5`` -> ``ibi/``; ``half_box``:
    half the smallest box edge, nm): pairs beyond 1-3 along the chain, harmonic bonded terms refined each
    iteration, and with ``ibi_pressure_correction`` the pressure correction towards the AA reference's pressure,
    with 30 iterations instead of 10 (the correction, at most 0.1 kT per iteration ramped in over five, took the demo
    liquid about 14 from +1,850 bar to its target); ``c.ibi`` overrides any of it."""
    data = {"cg_dataset": str(out / "cg_reference.h5"), "output_dir": str(out / "ibi"),
            "temperature": c.temperature_text, "cutoff": f"{min(1.2, round(half_box - 0.01, 2))} nm",
            "timestep": "5 fs", "max_iterations": 10, "equilibration_steps": 1000, "production_steps": 5000,
            "sample_interval": 50, "bonded": "harmonic", "refine_bonded": True, "exclusions": "bonded",
            "platform": c.cg_platform, "resume": True}
    if c.ibi_pressure_correction:
        data.update(max_iterations=30, pressure_tolerance="100 bar",
                    target_pressure=c.reference_pressure)
    return {**data, **c.ibi}


def _ibi_record(result, settings) -> dict:
    """What the IBI fit ended with, as plain data: iterations, stop reason, the best iteration's RDF error and
    pressure, the target pressure (null without the correction) and the first iteration's RDF error and pressure
    (what the correction traded)."""
    best, first = result.history[result.best_iteration], result.history[0]
    target = settings.target_pressure
    return {"iterations": result.iterations, "stop_reason": result.stop_reason, "converged": result.converged,
            "best_iteration": result.best_iteration, "rdf_error": best["error"], "pressure_bar": best["pressure_bar"],
            "target_pressure_bar": target, "pressure_held": None if target is None else
            abs(best["pressure_bar"] - target) <= settings.pressure_tolerance,
            "first_iteration": {"rdf_error": first["error"], "pressure_bar": first["pressure_bar"]}}


def _reference_settings(c: PolymerConfig, smiles: str, count: int, name: str) -> dict:
    data = dict(components=[dict(smiles=smiles, count=count, name=name)],
                density=format_quantity(c.density, "density"),
                forcefield=c.forcefield, charge_method=c.charge_method, temperature=c.temperature_text,
                pressure="1 bar", timestep="2 fs", nvt="10 ps", npt="100 ps", production="200 ps",
                report_interval="1 ps", checkpoint_interval="20 ps", platform=c.platform, seed=c.seed)
    if c.packing_fraction is not None:
        data["packing_density"] = format_quantity(c.packing_fraction * c.density, "density")
    data.update(c.reference)
    return data


def _mapping_spec(c: PolymerConfig, smiles: str) -> dict:
    return {"method": "repeat_unit", "smiles": [smiles],
            "options": {"repeat_smarts": c.repeat_smarts, "units_per_bead": c.units_per_bead,
                        "end_groups": c.end_groups}}


def _map_melt(c: PolymerConfig, smiles: str, count: int):
    """(OpenMM topology of ``count`` molecules of ``smiles``, its repeat-unit mapping as configured)."""
    from openff.toolkit import Molecule
    from openff.toolkit import Topology as OFFTopology

    from ..mapping import create_mapping

    omm = OFFTopology.from_molecules([Molecule.from_smiles(smiles)] * count).to_openmm()
    spec = _mapping_spec(c, smiles)
    return omm, create_mapping("repeat_unit", omm, {**spec["options"], "smiles": spec["smiles"]})


def check_mappings(c: PolymerConfig) -> None:
    """Map one molecule of the oligomer and of every transfer target with the configured repeat unit, before any
    work: a SMARTS that does not tile a chain is refused here (with the atoms it leaves over), not after the AA
    run."""
    for smiles in [c.smiles, *(t.smiles for t in c.transfer)]:
        _map_melt(c, smiles, 1)


def transfer_reference_settings(c: PolymerConfig, target: TransferTarget) -> dict:
    """The AA reference settings of a transfer target with ``aa_reference``: the melt's own, for the target's
    oligomer and count, with the target's ``reference`` overrides."""
    return {**_reference_settings(c, target.smiles, target.count, c.name), **target.reference}


def check_references(c: PolymerConfig) -> None:
    """Validate the AA reference settings of the melt and of every transfer target with ``aa_reference`` before
    any work, so that a bad override of a longer chain's reference is not found after the short chains' models."""
    from ..reference import ReferenceConfig

    ReferenceConfig.from_data(_reference_settings(c, c.smiles, c.count, c.name))
    for target in c.transfer:
        if target.aa_reference:
            ReferenceConfig.from_data(transfer_reference_settings(c, target))
        if target.aa_dataset is not None:
            _check_aa_dataset(c, target)


def _check_aa_dataset(c: PolymerConfig, target: TransferTarget) -> None:
    """A transfer target's ``aa_dataset``: a coarse-grained dataset of ``count`` chains of the target's beads (its
    header only: a long trajectory is not read to check it)."""
    from ..dataset import open_h5, read_header
    from ..exceptions import ConfigurationError
    from ..topology import CGTopology

    path = Path(target.aa_dataset)
    label = f"transfer target {target.name or target.smiles!r}: aa_dataset {path}"
    if not path.is_file():
        raise ConfigurationError(f"{label} does not exist; expected the target's AA melt mapped with this "
                                 "workflow's mapping (an openmm_cgml coarse-grained dataset)")
    with open_h5(path) as f:
        kind, meta, _, n_frames = read_header(f)
        n_beads = int(f["masses"].shape[0]) if "masses" in f else 0
    _, mapping = _map_melt(c, target.smiles, target.count)
    expected = CGTopology.from_mapping_data(mapping.to_data())
    if kind != "coarse-grained" or n_frames < 2 or n_beads != expected.n_beads:
        article = "an" if kind[:1] in "aeiou" else "a"
        raise ConfigurationError(f"{label} is {article} {kind} dataset of {n_frames} frames and {n_beads} particles; "
                                 f"expected a coarse-grained one (the AA melt mapped) of {expected.n_beads} beads "
                                 f"({target.count} chains) and at least 2 frames")
    if isinstance(meta.get("cg_topology"), dict) and \
            CGTopology.from_data(meta["cg_topology"]).fingerprint() != expected.fingerprint():
        raise ConfigurationError(f"{label} was mapped differently (its bead types, bonds or masses differ from this "
                                 "workflow's mapping of the target); map the AA melt with the workflow's mapping")


def chain_record(dataset) -> dict:
    """Chain structure and dynamics of a CG dataset (a mapped reference or a CG run) as plain data: <Rg^2>,
    <Ree^2> (nm^2, block errors), beads per chain, the end-to-end relaxation (tau, decayed, message) and the chain
    centre-of-mass MSD regime with D (nm^2/ps) where it is diffusive."""
    from ..analysis.chains import chain_com_msd, chain_dimensions, classify_msd, end_to_end_autocorrelation
    from ..analysis.msd import compute_msd, diffusion_coefficient, unwrap_positions
    from ..dataset import open_dataset
    from ..topology import CGTopology
    from .polymer_transfer import chain_order

    ds = open_dataset(dataset) if not hasattr(dataset, "positions") else dataset
    topology = CGTopology.from_dataset(ds)
    chains = chain_order(topology, what=str(getattr(ds, "path", "the dataset")))
    pos = np.asarray(ds.positions[:], dtype=float)
    box = np.asarray(ds.box[:], dtype=float)
    times = np.asarray(ds.time[:], dtype=float)
    dims = chain_dimensions(pos, chains, box)
    record = {"beads_per_chain": float(np.mean([len(ch) for ch in chains])), "chains": len(chains),
              "frames": int(len(times)), "duration_ps": float(times[-1] - times[0]),
              "rg2_nm2": [dims.rg2.value, dims.rg2.error], "ree2_nm2": [dims.ree2.value, dims.ree2.error],
              "ree2_over_rg2": [dims.ratio.value, dims.ratio.error]}
    if len(times) >= 4 and len(chains) >= 2:
        record["ree2_drift"] = _drift(dims.ree**2)
    if len(times) >= 8:
        corr = end_to_end_autocorrelation(pos, chains, times, box=box, fit=False)
        record["end_to_end"] = {"tau_ps": corr.tau_integral, "decayed": bool(corr.decayed), "message": corr.message}
        masses = None if topology.masses is None else np.asarray(topology.masses, dtype=float)
        msd = chain_com_msd(pos, chains, times, box=box, masses=masses)
        record["com_msd"] = {"regime": msd.regime.regime, "exponent": msd.regime.exponent, "D_nm2_ps": msd.D,
                             "D_err_nm2_ps": msd.D_err, "reason": msd.reason}
        # the monomers (beads): sub-diffusive up to the chain's relaxation, so their alpha differs from the chains'
        mono = compute_msd(unwrap_positions(pos, box), times, masses=masses, remove_com=True)
        regime = classify_msd(mono.lag_times, mono.msd)
        fit = diffusion_coefficient(mono, fit_range=regime.window) if regime.diffusive else None
        record["monomer_msd"] = {"regime": regime.regime, "exponent": regime.exponent,
                                 "D_nm2_ps": None if fit is None else fit.D, "D_err_nm2_ps": None if fit is None
                                 else fit.D_err, "reason": regime.reason if fit is None else fit.reason}
    return record


def _copy_if_changed(source: Path, target: Path) -> None:
    """``target`` made a copy of ``source`` (atomically), unless it already is one."""
    import filecmp
    import shutil

    from .._io import atomic_path

    if target.exists() and filecmp.cmp(source, target, shallow=False):
        return
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _kept_run_fits(path: Path, box, start: str) -> bool:
    """Whether a finished run kept at ``path`` (if any) is in ``box`` and started from ``start`` (its metadata's
    ``cg_start``; runs from before the key were grown random walks); False only for a kept run that is not."""
    from .demo import _completed_dataset

    done = _completed_dataset(path) if path.exists() else None
    return done is None or (bool(np.allclose(np.asarray(done.box[0], dtype=float), box, rtol=1e-6, atol=1e-9))
                            and done.metadata.get("cg_start", "grown random walks") == start)


def _drift(values: np.ndarray) -> dict:
    """Whether a per-chain quantity (frames x chains, e.g. Ree^2) drifts over the run: its mean over the first and
    the second half of the frames, and their difference with the error of the chains' paired differences.  A
    reference whose chains have not relaxed from their starting shapes shows it (``stationary``: the change is
    within 2 standard errors)."""
    half = len(values) // 2
    first, second = values[:half].mean(0), values[half:].mean(0)
    n = values.shape[1]

    def estimate(x):
        return [float(x.mean()), float(x.std(ddof=1) / math.sqrt(n))]

    change = estimate(second - first)
    return {"first_half_nm2": estimate(first), "second_half_nm2": estimate(second), "change_nm2": change,
            "stationary": bool(abs(change[0]) <= 2 * change[1])}


def _alpha(reference: dict, model: dict) -> dict:
    """alpha = D_CG / D_AA of the chain centres of mass (``chain_com``) and of the monomers (``monomer``), each
    with its error, or None and why."""
    out = {}
    for name, key in (("chain_com", "com_msd"), ("monomer", "monomer_msd")):
        d_ref, d_mod = (r.get(key, {}).get("D_nm2_ps") for r in (reference, model))
        if d_ref is None or d_mod is None:
            why = "; ".join(f"{n}: {r.get(key, {}).get('reason', 'too few frames')}"
                            for n, r in (("AA", reference), ("CG", model)) if r.get(key, {}).get("D_nm2_ps") is None)
            out[name] = {"alpha": None, "reason": f"no diffusive regime ({why})"}
            continue
        e_ref, e_mod = reference[key]["D_err_nm2_ps"] or 0.0, model[key]["D_err_nm2_ps"] or 0.0
        alpha = d_mod / d_ref
        out[name] = {"alpha": alpha, "alpha_err": alpha * float(np.hypot(e_ref / d_ref, e_mod / d_mod))}
    return out


#: The fewest frames a CG model's run records (its report interval shrinks below 25 steps to keep them).
MIN_RUN_FRAMES = 40


def _model_run(c, folder: Path, name: str, system, topology, positions, metadata: dict, progress: bool, what: str,
               temperature: str | None = None, timestep_fs: float | None = None):
    """Scan the timestep of ``system`` (NVE drift), then run ``cg_duration_ps`` at the largest that holds (under
    the transport-safe Bussi thermostat, after a Langevin equilibration): ``folder/<name>_run.h5``.  ``c`` is a
    workflow configuration with ``overwrite``, ``cg_duration_ps``, ``cg_equilibration_steps``, ``scan_steps`` and
    ``cg_platform``; the runs are at ``temperature`` (default: ``c.temperature_text``).  ``timestep_fs`` runs at that
    timestep instead, without the scan."""
    from .demo import _cg_run, _completed_dataset, _scan_record, _timestep_scan, run_stepping_down

    temperature = temperature or c.temperature_text
    path = folder / f"{name}_run.h5"
    done = None if c.overwrite else _completed_dataset(path)
    if done is not None:
        return done
    scan = None if timestep_fs is not None else _timestep_scan(
        c, folder / f"{name}_timestep_scan.json", system, positions, topology, steps=c.scan_steps, what=what,
        temperature=temperature)

    def run_at(dt_fs: float, attempt: int):
        rerun = c.model_copy(update={"overwrite": c.overwrite or attempt > 0})
        extra = {} if scan is None else {"timestep_scan": _scan_record(scan)}
        steps = max(int(c.cg_duration_ps * 1000 / dt_fs) // 25 * 25, 100)
        # a frame every 25 steps, or every 5 or every step where that would leave a short run (a large timestep)
        # fewer than MIN_RUN_FRAMES frames: the chain analysis needs them for its correlation functions and MSDs
        interval = next((k for k in (25, 5) if steps // k >= MIN_RUN_FRAMES), 1)
        return _cg_run(rerun, path, topology, system, positions, timestep=f"{dt_fs:g} fs", steps=steps,
                       equilibration_steps=c.cg_equilibration_steps, progress=progress, temperature=temperature,
                       metadata={**metadata, **extra}, report_interval=interval)

    if scan is None:
        return run_at(timestep_fs, 0)
    return run_stepping_down(run_at, [dt for dt, trial in scan.trials.items() if trial["stable"]])


def _chain_box(topology, run) -> dict:
    """Whether the chains of ``run``'s last frame stay shorter than half the box (a longer chain can meet its own
    periodic image; :func:`~openmm_cgml.mapping.check_chain_box` warns with the numbers): the largest extent, the
    limit (nm) and how many chains reach it."""
    from ..mapping import check_chain_box

    check = check_chain_box(topology.to_openmm(), np.asarray(run.box[-1], dtype=float),
                            np.asarray(run.positions[-1], dtype=float), on_problem="warn")
    return {"largest_extent_nm": float(np.max(check.extents)), "limit_nm": float(check.limit),
            "chains_at_limit": len(check.too_long), "chains": len(check.extents)}


def _transfer(c: PolymerConfig, out: Path, target: TransferTarget, short: dict, models: dict, density_g_cm3: float,
              progress: bool) -> dict:
    """One transfer target: its CG topology (the same mapping on the longer molecule), a grown melt, the runs of
    every model, their chain records and, with an AA reference, the comparisons."""
    from openmm.unit import dalton

    from ..config import load_config
    from ..dataset import open_dataset
    from ..exceptions import InvalidMappingError, SimulationError
    from ..forces.xml import save_system
    from ..topology import CGTopology
    from .demo import _compare, _write_yaml
    from .map import MapConfig, run_map
    from .polymer_transfer import chain_melt_positions, mean_bond_lengths, relax_melt, transfer_system
    from .reference import run_reference

    omm, mapping = _map_melt(c, target.smiles, target.count)
    spec = _mapping_spec(c, target.smiles)
    total_mass_g = sum(a.element.mass.value_in_unit(dalton) for a in omm.atoms()) / 6.02214076e23
    length_nm = (total_mass_g / density_g_cm3) ** (1 / 3) * 1e7
    box = np.eye(3) * length_nm
    topology = CGTopology.from_mapping_data(mapping.to_data(), box)
    ratio = topology.n_beads / topology.n_molecules / short["beads_per_chain"]
    folder = out / "transfer" / (target.name or f"x{ratio:.3g}")
    folder.mkdir(parents=True, exist_ok=True)
    cg_ref = open_dataset(out / "cg_reference.h5")
    short_top = CGTopology.from_dataset(cg_ref)
    frames = np.unique(np.linspace(0, cg_ref.n_frames - 1, min(50, cg_ref.n_frames)).astype(int))
    bonds = mean_bond_lengths(short_top, np.asarray(cg_ref.positions[frames], dtype=float),
                              np.asarray(cg_ref.box[frames], dtype=float))
    record = {"smiles": target.smiles, "count": target.count, "beads_per_chain": topology.n_beads / topology.n_molecules,
              "length_ratio": ratio, "box_nm": length_nm, "density_g_cm3": density_g_cm3,
              "density_from": "the short melt's AA density", "models": {}}
    if target.aa_dataset is not None:  # recorded elsewhere, mapped: kept as this folder's reference
        _copy_if_changed(Path(target.aa_dataset), folder / "cg_reference.h5")
    elif target.aa_reference:
        ref_cfg = transfer_reference_settings(c, target)
        _write_yaml(folder / "reference.yaml", ref_cfg)
        ref = run_reference(ref_cfg, folder / "aa.h5", overwrite=c.overwrite, progress=progress)
        map_yaml = _write_yaml(folder / "map.yaml", {"input": str(folder / "aa.h5"),
                                                       "output": str(folder / "cg_reference.h5"),
                                                       "mapping_out": str(folder / "mapping.json"),
                                                       "mapping": spec})
        if c.overwrite or not (folder / "cg_reference.h5").exists():
            run_map(load_config(map_yaml, MapConfig), progress=progress)
        npt_density = ref.npt_density
    if target.aa_reference or target.aa_dataset is not None:
        mapped = open_dataset(folder / "cg_reference.h5")
        if target.aa_dataset is not None:  # the density its AA run recorded, carried by its mapping
            npt_density = mapped.metadata.get("npt_density_g_cm3")
        aa_top = CGTopology.from_dataset(mapped)
        if aa_top.fingerprint() != topology.fingerprint():
            raise InvalidMappingError(f"{target.aa_dataset or folder / 'cg_reference.h5'}: the AA reference's mapped "
                                      "topology differs from the CG topology built for the transfer (same SMILES, "
                                      "count and mapping expected)"
                                      + ("" if target.aa_dataset else "; remove the folder to redo it"))
        # the AA melt's chains against its box too (its mapped last frame; the same check as each CG run's)
        record["aa"] = {**chain_record(mapped), "density_g_cm3": npt_density,
                        "chain_box": _chain_box(topology, mapped)}
        if target.aa_dataset is not None:
            record["aa"]["source"] = str(target.aa_dataset)
        # the CG runs at the AA melt's own state point (its production box: longer chains pack denser), so that
        # the two are compared at one density
        box = np.asarray(mapped.box[-1], dtype=float)
        length_nm = float(np.cbrt(abs(np.linalg.det(box))))
        topology = CGTopology.from_mapping_data(mapping.to_data(), box)
        record.update(box_nm=length_nm, density_g_cm3=total_mass_g / (length_nm * 1e-7) ** 3,
                      density_from="its AA melt's production box")
        if mapped.metadata.get("hydrogen_mass_da") is not None:  # the AA run's own flag, carried by the mapping:
            # structure as with physical masses; its relaxation times and D are not
            record["aa"].update(hydrogen_mass_da=mapped.metadata["hydrogen_mass_da"],
                                dynamics_note=mapped.metadata["hydrogen_mass_note"])
        # the CG melts start from the AA melt's last frame, mapped: relaxed chains (an AA melt started from
        # unperturbed conformations has its chain dimensions from the start), where grown random walks take many
        # end-to-end times to relax; each model then relaxes to its own equilibrium (ree2_drift shows it)
        positions = np.asarray(mapped.positions[-1], dtype=float)
        record["cg_start"] = "its AA melt's last frame, mapped"
    else:
        # grown at 0.8 x the shortest bond apart (a melt is denser than random growth can pack), then minimised
        positions, _ = chain_melt_positions(topology, box=topology.box_vectors, bond_length=bonds, seed=c.seed)
        record["cg_start"] = "grown random walks"
    for name, source in models.items():
        if target.models is not None and name not in target.models:
            continue
        system = transfer_system(source, short_top, topology)
        save_system(system, folder / f"{name}_system.xml")
        start = relax_melt(system, positions, topology.box_vectors, temperature=c.temperature, steps=0,
                           platform=c.cg_platform, seed=c.seed).positions
        run_c = c if target.duration_ps is None else c.model_copy(update={"cg_duration_ps": target.duration_ps})
        if not _kept_run_fits(folder / f"{name}_run.h5", topology.box_vectors, record["cg_start"]):
            logger.info("transfer to %s: the kept %s run is in another box or from another start (a folder from "
                        "before the runs took their AA melt's box and last frame): redone",
                        target.name or target.smiles, name)
            run_c = run_c.model_copy(update={"overwrite": True})
        try:
            done = _model_run(run_c, folder, name, system, topology, start,
                              {"force_field": f"{name} CG model of {c.smiles} transferred to {target.smiles}",
                               "force_field_source": str(source), "cg_start": record["cg_start"]},
                              progress, f"{name} model on the longer chains")
        except SimulationError as exc:  # a model that cannot run on the longer chains is a result, not a crash
            logger.warning("transfer to %s: %s", target.name or target.smiles, exc)
            record["models"][name] = {"failed": str(exc)}
            continue
        record["models"][name] = chain_record(done)
        record["models"][name]["chain_box"] = _chain_box(topology, done)
        if target.aa_reference or target.aa_dataset is not None:
            _compare(folder, done.path.name, f"compare_{name}", system=f"{name}_system.xml")
            record["models"][name]["comparison"] = json.loads((folder / f"compare_{name}" / "comparison.json")
                                                              .read_text())["rows"]
    return record


def _scaling_plot(path: Path, records: dict) -> Path:
    """<Rg^2>/N and <Ree^2>/N against N (beads per chain) for AA and each CG model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for label, points in records.items():
        pts = sorted(points)
        n = np.array([p[0] for p in pts])
        for ax, k in zip(axes, (1, 2)):
            y = np.array([p[k][0] for p in pts]) / n
            e = np.array([p[k][1] for p in pts]) / n
            ax.errorbar(n, y, yerr=e, marker="o", capsize=3, label=label)
    for ax, what in zip(axes, ("<Rg^2> / N", "<Ree^2> / N")):
        ax.set_xlabel("beads per chain N")
        ax.set_ylabel(f"{what} (nm^2)")
        ax.set_xscale("log")
    axes[0].legend()
    fig.tight_layout()
    from .._io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def summary_markdown(s: dict) -> str:
    """The tables of a polymer summary."""
    def est(x):
        return "-" if x is None else f"{x[0]:.4g} ± {x[1]:.2g}"

    lines = [f"# Polymer melt: {s['system']}", "", "## Chains", "",
             "| run | beads/chain | <Rg^2> (nm^2) | <Ree^2> (nm^2) | tau_ee (ps) | relaxed | COM MSD | D_COM (nm^2/ps) |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in s["chains"].items():
        ee, msd = r.get("end_to_end", {}), r.get("com_msd", {})
        lines.append(f"| {label} | {r['beads_per_chain']:.3g} | {est(r['rg2_nm2'])} | {est(r['ree2_nm2'])} | "
                     f"{ee.get('tau_ps', float('nan')):.3g} | {ee.get('decayed', '-')} | {msd.get('regime', '-')} | "
                     f"{'-' if msd.get('D_nm2_ps') is None else format(msd['D_nm2_ps'], '.3g')} |")
    if s.get("ibi"):
        b, f = s["ibi"], s["ibi"]["first_iteration"]
        target = ("no pressure correction" if b["target_pressure_bar"] is None else
                  f"pressure correction towards {b['target_pressure_bar']:.4g} bar "
                  f"({'reached' if b['pressure_held'] else 'not reached'})")
        lines += ["", "## IBI fit", "",
                  f"{b['iterations']} iterations ({b['stop_reason']}), {target}: the best, iteration "
                  f"{b['best_iteration']}, has RDF error {b['rdf_error']:.3g} at {b['pressure_bar']:.4g} bar; the "
                  f"first (the potential of mean force) had {f['rdf_error']:.3g} at {f['pressure_bar']:.4g} bar."]
    lines += ["", "## alpha = D_CG / D_AA (chain centres of mass and monomers)", ""]
    for name, both in s.get("alpha", {}).items():
        for what, a in both.items():
            lines.append(f"- {name}, {what.replace('_', ' ')}: " + (
                f"{a['alpha']:.3g} ± {a['alpha_err']:.2g}" if a["alpha"] is not None else f"not measured: {a['reason']}"))
    if s.get("npt"):
        aa = s.get("aa", {})
        lines += ["", "## Density at the AA pressure (NPT)", "",
                  f"AA melt: {aa.get('density_g_cm3') or float('nan'):.4g} ± {aa.get('density_std_g_cm3') or float('nan'):.2g} "
                  "g/cm^3 (mean and sd of its NPT run).", "",
                  "| model | density (g/cm^3) | from AA | settled | holds AA density | note |", "|---|---|---|---|---|---|"]
        for label, r in s["npt"].items():
            rel = r.get("relative_to_reference")
            lines.append(f"| {label} | {r['density_g_cm3']:.4g} ± {r['density_err_g_cm3']:.2g} | "
                         f"{'-' if rel is None else format(100 * rel, '+.1f') + ' %'} | {r['settled']} | "
                         f"{'-' if r['holds'] is None else r['holds']} | {r['note']} |")
    for name in ("ibi", "neural"):
        if f"{name}_comparison_table" in s:
            lines += ["", f"## {name} against AA", "", s[f"{name}_comparison_table"]]
    return "\n".join(lines) + "\n"


def _npt_record(c: PolymerConfig, path: Path, system, run, reference_density: float | None) -> dict | None:
    """The density ``system`` holds at the AA pressure from the last frame of its NVT ``run`` (``npt_duration_ps``
    after a fifth as much equilibration, at the run's timestep): :func:`~openmm_cgml.simulation.npt_density`'s
    record, kept in ``path`` (a rerun reads it, unless ``npt_duration_ps`` or the run's timestep changed)."""
    import json

    from .._io import atomic_write_text, read_json
    from ..simulation import npt_density

    if not c.npt_duration_ps:
        return None
    dt_ps = float(run.metadata["timestep_ps"])
    steps = max(int(c.npt_duration_ps / dt_ps) // 25 * 25, 500)
    if path.exists() and not c.overwrite:
        kept = read_json(path, "a CG model's NPT density")
        if kept.get("steps") == steps and math.isclose(kept.get("timestep_fs") or 0.0, dt_ps * 1e3, rel_tol=1e-9):
            return kept
        logger.info("%s was run for %s steps at %s fs; npt_duration_ps now asks for %d at %g: redone", path.name,
                    kept.get("steps"), kept.get("timestep_fs"), steps, dt_ps * 1e3)
    result = npt_density(system, np.asarray(run.positions[-1], dtype=float), box_vectors=np.asarray(run.box[-1]),
                         temperature=c.temperature_text, pressure=c.reference_pressure, timestep=f"{dt_ps} ps", steps=steps,
                         equilibration_steps=steps // 5, reference_density=reference_density,
                         tolerance=c.npt_tolerance, platform=c.cg_platform, seed=c.seed).to_data()
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    return result


def run_polymer(config, *, progress: bool = False) -> dict:
    """Run the polymer workflow of ``config`` (a :class:`PolymerConfig` or its data), resuming finished steps;
    returns the summary (also ``summary.json`` / ``summary.md``)."""
    from .._io import atomic_write_text
    from ..config import load_config
    from ..dataset import open_dataset
    from ..forces.xml import save_system
    from ..potential import CGPotential
    from ..topology import CGTopology
    from .demo import _compare, _write_yaml
    from .ibi import IBIConfig, run_ibi
    from .map import MapConfig, run_map
    from .reference import run_reference
    from .train import TrainConfig, run_train

    c = config if isinstance(config, PolymerConfig) else PolymerConfig.from_data(dict(config))
    out = c.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    fresh = c.overwrite
    summary: dict = {"system": f"{c.count} x {c.smiles} at {c.temperature_text}", "chains": {}}
    check_mappings(c)
    check_references(c)

    logger.info("polymer 1: all-atom melt of %d x %s", c.count, c.smiles)
    ref_cfg = _reference_settings(c, c.smiles, c.count, c.name)
    _write_yaml(out / "reference.yaml", ref_cfg)
    ref = run_reference(ref_cfg, out / "aa.h5", overwrite=fresh, progress=progress)
    aa = open_dataset(ref.dataset)
    summary["aa"] = {"frames": ref.n_frames, "density_g_cm3": ref.npt_density,
                     "density_std_g_cm3": ref.npt_density_std,
                     "ns_per_day": aa.metadata.get("production_ns_per_day_last_segment")}

    logger.info("polymer 2: repeat-unit mapping (%s, %d per bead)", c.repeat_smarts, c.units_per_bead)
    map_yaml = _write_yaml(out / "map.yaml", {"input": str(out / "aa.h5"), "output": str(out / "cg_reference.h5"),
                                              "mapping_out": str(out / "mapping.json"),
                                              "mapping": _mapping_spec(c, c.smiles)})
    if fresh or not (out / "cg_reference.h5").exists():
        run_map(load_config(map_yaml, MapConfig), progress=progress)
    cg_ref = open_dataset(out / "cg_reference.h5")
    summary["chains"]["AA"] = short = chain_record(cg_ref)  # an unrelaxed reference is warned about (and said)

    logger.info("polymer 3: IBI (pairs and bonded terms along the chain, refined)")
    half_box = 0.5 * float(np.asarray(cg_ref.box[-1]).diagonal().min())
    ibi_yaml = _write_yaml(out / "ibi.yaml", ibi_settings(c, out, half_box))
    ibi_cfg = load_config(ibi_yaml, IBIConfig)
    summary["ibi"] = _ibi_record(run_ibi(ibi_cfg.model_copy(update={"overwrite": fresh}), progress=progress).result,
                                 ibi_cfg)
    topology = CGTopology.from_dataset(cg_ref)
    start = np.asarray(cg_ref.positions[-1], dtype=float)
    models = {"ibi": out / "ibi"}

    logger.info("polymer 4: the IBI model's run and comparison")
    system = CGPotential(out / "ibi").createSystem(topology)
    save_system(system, out / "cg_system.xml")
    done = _model_run(c, out, "cg", system, topology, start, {"force_field": "IBI (openmm_cgml polymer)",
                                                               "force_field_source": str(out / "ibi")},
                      progress, "IBI model")
    _compare(out, done.path.name, "compare", system="cg_system.xml")
    summary["ibi_comparison_table"] = (out / "compare" / "comparison.md").read_text()
    summary["chains"]["IBI"] = chain_record(done)
    summary["cg"] = {"ns_per_day": done.metadata.get("ns_per_day"), "timestep_fs": done.metadata["timestep_ps"] * 1e3}
    summary["npt"] = {}
    npt = _npt_record(c, out / "npt_ibi.json", system, done, ref.npt_density)
    if npt is not None:
        summary["npt"]["IBI"] = npt

    if c.neural:
        logger.info("polymer 5: neural model (force matching), its run and comparison")
        train_yaml = _write_yaml(out / "train.yaml", {
            "dataset": str(out / "cg_reference.h5"), "output": str(out / "neural"), "temperature": c.temperature_text,
            "resume": True,
            "model": {"name": "schnet", "hidden": 32, "n_rbf": 16, "n_interactions": 2, "intra_cutoff": "0.6 nm",
                      "inter_cutoff": f"{min(1.0, round(half_box - 0.02, 2))} nm", **c.model},
            "priors": "auto",
            "training": {"epochs": 20, "batch_size": 16, "learning_rate": 3.0e-3, "scheduler": "cosine",
                         "position_noise": "0.005 nm", **c.training}})
        bundle = out / "neural" / "model.cgml"
        if fresh or not bundle.exists():
            run_train(load_config(train_yaml, TrainConfig).model_copy(update={"overwrite": fresh}), progress=progress)
        system = CGPotential(bundle).createSystem(topology)
        save_system(system, out / "neural_system.xml")
        done = _model_run(c, out, "neural", system, topology, start,
                          {"force_field": "neural CG (force matching) + priors (openmm_cgml polymer)",
                           "force_field_source": str(bundle), "bundle": str(bundle)}, progress, "neural model")
        _compare(out, done.path.name, "neural_compare", system="neural_system.xml")
        summary["neural_comparison_table"] = (out / "neural_compare" / "comparison.md").read_text()
        summary["chains"]["neural"] = chain_record(done)
        npt = _npt_record(c, out / "npt_neural.json", system, done, ref.npt_density)
        if npt is not None:
            summary["npt"]["neural"] = npt
        summary["neural"] = {"ns_per_day": done.metadata.get("ns_per_day"),
                             "timestep_fs": done.metadata["timestep_ps"] * 1e3}
        models["neural"] = bundle
    summary["alpha"] = {name: _alpha(short, summary["chains"][label])
                        for name, label in (("ibi", "IBI"), ("neural", "neural")) if label in summary["chains"]}

    density = ref.npt_density or c.density  # g/cm^3
    summary["transfer"] = {}
    for target in c.transfer:
        logger.info("polymer 6: transfer to %d x %s", target.count, target.smiles)
        rec = _transfer(c, out, target, short, models, density, progress)
        summary["transfer"][target.name or f"x{rec['length_ratio']:.3g}"] = rec
    scaling = {"AA": [(short["beads_per_chain"], short["rg2_nm2"], short["ree2_nm2"])]}
    for label in ("IBI", "neural"):
        if label in summary["chains"]:
            r = summary["chains"][label]
            scaling[label] = [(r["beads_per_chain"], r["rg2_nm2"], r["ree2_nm2"])]
    for rec in summary["transfer"].values():
        if "aa" in rec:
            scaling["AA"].append((rec["aa"]["beads_per_chain"], rec["aa"]["rg2_nm2"], rec["aa"]["ree2_nm2"]))
        for name, r in rec["models"].items():
            if "failed" in r:
                continue
            scaling["IBI" if name == "ibi" else name].append((r["beads_per_chain"], r["rg2_nm2"], r["ree2_nm2"]))
    summary["scaling"] = scaling
    summary["scaling_plot"] = str(_scaling_plot(out / "chain_scaling.png", scaling))
    atomic_write_text(out / "chains.json", json.dumps(summary["chains"], indent=2, default=str) + "\n")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    return summary
