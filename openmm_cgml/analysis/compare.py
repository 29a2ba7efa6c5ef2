"""Comparison of a model (CG) run with its reference (AA or mapped-AA) run: table and figures.

Metrics (stated here once, used everywhere):

* RDF: root-mean-square difference of g(r) over the compared range, sqrt(int (g_model - g_ref)^2 dr / int dr)
  (:func:`~openmm_cgml.analysis.rdf_difference`), for every type pair present in both runs and for the
  molecular centres of mass.
* Bonded distributions (bonds, angles, dihedrals along CG bonds, per bead-type class): overlap coefficient
  int min(p_model, p_ref) dx (1 = identical).
* Many-body structure (:mod:`~openmm_cgml.analysis.manybody`, when both runs have the same particle types): the
  three-body angular distribution of intermolecular neighbours and the distribution of their number, within the
  first minimum of the reference's intermolecular g(r); overlap coefficient with a jackknife error over blocks.
* Chains (molecules that are linear chains of at least :data:`MIN_CHAIN_BEADS` beads along their bonds, per
  molecule type found in both runs; :func:`chain_molecules`): <Rg^2> and <Ree^2> (nm^2, standard errors the
  larger of the block and over-chain errors of :func:`~openmm_cgml.analysis.chains.chain_dimensions`), model -
  reference with its error; the overlap of the Rg distributions with a jackknife error over blocks of frames;
  and the end-to-end relaxation time (the integral of the end-to-end vector autocorrelation,
  :func:`~openmm_cgml.analysis.chains.end_to_end_autocorrelation`), compared as tau_ref / tau_model (a speed-up,
  as alpha), refused with a note when the reference's autocorrelation has not decayed (the reference is not
  relaxed, its chain statistics are not equilibrium values).
* Density: model - reference (g/cm^3), each an equilibrated mean with a correlation-aware standard error, or
  shown as fixed (no error bar) when the box never changes (NVT).
* Kinetic temperature of the model run (when it was recorded by ``run_simulation``): model - thermostat, with
  a warning if the run did not hold it (its structure and dynamics are then those of another temperature).
* Dynamics: molecular centre-of-mass self-diffusion coefficients, each with its thermostat and whether its MSD
  was diffusive (local slope d ln MSD / d ln t within a tolerance of 1 over a factor 3 in time), standard errors
  from blocks of the trajectory (and from replicas when several runs are given); Yeh-Hummer corrected values
  when viscosities are given; alpha = D_model / D_ref, refused between runs whose thermostats give different or
  damped (Langevin) transport unless allowed.  The same per species (residue name): :func:`species_diffusion`.
* Over temperatures: Arrhenius Ea of both and the alpha(T) model.

Inputs are :class:`openmm_cgml.dataset.Dataset` objects (or anything with the same attributes); particle
types are the topology's atom names and each residue is a molecule.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import CGMLError, TrajectoryError
from ..thermostat import TRANSPORT_SAFE, describe_thermostat, recorded_thermostat, same_thermostat
from ._checks import perpendicular_widths
from .arrhenius import ArrheniusFit, fit_arrhenius
from .chains import linear_path
from .distributions import (
    Distribution,
    compute_angles,
    compute_bonds,
    compute_dihedrals,
    compute_distribution,
    density_timeseries,
    distribution_overlap,
    enumerate_angles,
    enumerate_dihedrals,
    molecule_centers,
)
from .msd import (
    DiffusionResult,
    MSDResult,
    apply_finite_size_correction,
    combine_replicas,
    compute_msd,
    diffusion_coefficient,
    remove_com_drift,
    unwrap_positions,
    yeh_hummer_correction,
)
from .rdf import RDFResult, compute_rdf, rdf_difference
from .statistics import mean_with_error

__all__ = ["ComparisonRow", "Comparison", "compare_runs", "molecular_diffusion", "compare_temperatures",
           "TemperatureComparison", "particle_types", "molecule_indices", "plot_comparison", "thermostat_check",
           "run_temperature", "production_density_note", "chain_molecules", "MIN_CHAIN_BEADS", "diffusion_check",
           "species_diffusion", "species_diffusion_check", "molecule_species", "local_structures"]

logger = logging.getLogger(__name__)

#: Fewest beads of a molecule that gets chain rows (Rg^2, Ree^2, Rg distribution, end-to-end relaxation).
MIN_CHAIN_BEADS = 4
#: Bins of the Rg histograms compared.
_CHAIN_BINS = 50


@dataclass(frozen=True)
class ComparisonRow:
    """One line of the comparison table (NaN where not applicable).

    ``reference_err_kind`` / ``model_err_kind`` say what the +/- is: ``"s.e."`` (standard error of the value),
    ``"sd"`` (standard deviation of the distribution), ``"fixed (NVT)"`` (a quantity that cannot fluctuate,
    no error) or ``""`` (none).  ``reference_note`` / ``model_note`` carry each side's diagnostics (for D: the
    thermostat and whether the MSD was diffusive); ``note`` the row's (for alpha: why it is not converged,
    refused, or not finite-size corrected).  ``value_err`` is the standard error of ``value`` where it has one.
    """

    quantity: str
    unit: str
    reference: float
    reference_err: float
    model: float
    model_err: float
    metric: str
    value: float
    reference_err_kind: str = "s.e."
    model_err_kind: str = "s.e."
    reference_note: str = ""
    model_note: str = ""
    note: str = ""
    value_err: float = float("nan")


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare_runs`: the table rows and the curves behind them."""

    rows: tuple[ComparisonRow, ...]
    rdfs: dict = field(default_factory=dict)
    distributions: dict = field(default_factory=dict)
    msd: dict = field(default_factory=dict)
    density: dict = field(default_factory=dict)

    def to_data(self) -> list[dict[str, Any]]:
        """Rows as JSON-ready dicts (NaN written as None)."""
        out = []
        for row in self.rows:
            entry = {}
            for key, val in row.__dict__.items():
                entry[key] = None if isinstance(val, float) and not np.isfinite(val) else val
            out.append(entry)
        return out

    def to_markdown(self) -> str:
        head = "| quantity | unit | reference | model | metric | value | note |\n|---|---|---|---|---|---|---|\n"
        lines = [f"| {r.quantity} | {r.unit} | {_cell(r.reference, r.reference_err, r.reference_err_kind, r.reference_note)} "
                 f"| {_cell(r.model, r.model_err, r.model_err_kind, r.model_note)} | {r.metric} | "
                 f"{_cell(r.value, r.value_err) if np.isfinite(r.value_err) else _num(r.value)} | {r.note} |"
                 for r in self.rows]
        return head + "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf)
        names = list(ComparisonRow.__dataclass_fields__)
        writer.writerow(names)
        for r in self.rows:
            writer.writerow([getattr(r, n) for n in names])
        return buf.getvalue()


def _num(x: float) -> str:
    return "" if not np.isfinite(x) else f"{x:.4g}"


def _cell(x: float, e: float, kind: str = "", note: str = "") -> str:
    """``"0.71 ± 0.002 (s.e.)"``, ``"0.7125 (fixed (NVT))"``, with the side's note in brackets."""
    if not np.isfinite(x):
        text = ""
    elif kind.startswith("fixed"):
        text = f"{x:.4g} ({kind})"
    elif np.isfinite(e):
        text = f"{x:.4g} ± {e:.2g}" + (f" ({kind})" if kind else "")
    else:
        text = f"{x:.4g}"
    return f"{text} [{note}]" if note else text


def particle_types(dataset) -> np.ndarray:
    """The particle types compared, one per particle.

    For a coarse-grained dataset these are its CG topology's bead types
    (:meth:`~openmm_cgml.topology.CGTopology.from_dataset`), so symmetry-equivalent beads (the two ends of a
    molecule) are pooled; for an all-atom dataset the topology's atom names.
    """
    if getattr(dataset, "kind", None) == "coarse-grained" and hasattr(dataset, "topology_data"):
        from ..topology import CGTopology

        return np.asarray(CGTopology.from_dataset(dataset, frame=None).bead_types)
    return np.array([a["name"] for c in dataset.topology_data["chains"] for r in c["residues"] for a in r["atoms"]])


def molecule_indices(dataset) -> np.ndarray:
    """Residue number of each particle (one residue per molecule in openmm_cgml datasets)."""
    out, k = [], 0
    for c in dataset.topology_data["chains"]:
        for r in c["residues"]:
            out.extend([k] * len(r["atoms"]))
            k += 1
    return np.array(out)


def molecule_species(dataset) -> list[str]:
    """Residue name of each molecule, in the order of :func:`molecule_indices` (residues without particles are
    no molecules)."""
    return [str(r.get("name", "")) for c in dataset.topology_data["chains"] for r in c["residues"] if r["atoms"]]


def _molecular_com(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Unwrapped molecular centres of mass ``(n_frames, n_molecules, 3)`` with the drift of the centre of mass of
    all of them removed, and the molecules' masses."""
    mol = molecule_indices(dataset)
    com = molecule_centers(dataset.positions, mol, dataset.masses, box=dataset.box)
    com = unwrap_positions(com, dataset.box)
    mol_masses = np.bincount(np.unique(mol, return_inverse=True)[1], weights=dataset.masses)
    return remove_com_drift(com, mol_masses), mol_masses


def _com_diffusion(com: np.ndarray, times, molecules=None, *, fit_range, n_blocks: int, tolerance: float,
                   min_span: float) -> tuple[MSDResult, DiffusionResult]:
    """MSD and D of the molecules ``molecules`` (indices into ``com`` of :func:`_molecular_com`; all if None),
    in the frame of the centre of mass of the whole system."""
    x = com if molecules is None else com[:, np.asarray(molecules, dtype=np.int64)]
    msd = compute_msd(x, times, remove_com=False, n_blocks=n_blocks)
    return msd, diffusion_coefficient(msd, fit_range=fit_range, tolerance=tolerance, min_span=min_span)


def molecular_diffusion(dataset, *, fit_range=None, n_blocks: int = 5, tolerance: float = 0.1,
                        min_span: float = 3.0) -> tuple[MSDResult, DiffusionResult]:
    """Self-diffusion of molecular centres of mass (nm^2/ps) from a dataset: block and molecule standard errors
    and the diffusive-regime diagnostics (:func:`~openmm_cgml.analysis.fit_diffusion`), not finite-size
    corrected.  Displacements are taken relative to the centre of mass of all molecules."""
    com, _ = _molecular_com(dataset)
    return _com_diffusion(com, dataset.time, fit_range=fit_range, n_blocks=n_blocks, tolerance=tolerance,
                          min_span=min_span)


def _species_molecules(dataset) -> dict[str, np.ndarray]:
    """Molecule indices of each species (residue name), species in order of first appearance."""
    out: dict[str, list[int]] = {}
    for i, name in enumerate(molecule_species(dataset)):
        out.setdefault(name, []).append(i)
    return {name: np.array(idx) for name, idx in out.items()}


def species_diffusion(dataset, *, fit_range=None, n_blocks: int = 5, tolerance: float = 0.1,
                      min_span: float = 3.0) -> dict[str, DiffusionResult]:
    """Self-diffusion of the molecular centres of mass of each species (molecules grouped by residue name, in
    order of first appearance), nm^2/ps.

    Each species is analysed as :func:`molecular_diffusion` analyses all molecules (the same diffusive-regime
    detection and errors), over its own molecules only; displacements are taken relative to the centre of mass
    of the whole system, so that the molecule-weighted mean of the species' MSDs is the MSD of all molecules.  A
    species whose MSD has not reached the diffusive regime is returned with ``converged`` False and the reason.
    """
    com, _ = _molecular_com(dataset)
    return {name: _com_diffusion(com, dataset.time, idx, fit_range=fit_range, n_blocks=n_blocks,
                                 tolerance=tolerance, min_span=min_span)[1]
            for name, idx in _species_molecules(dataset).items()}


def _open(dataset):
    from ..dataset import Dataset, open_dataset

    return dataset if isinstance(dataset, Dataset) else open_dataset(dataset)


def _check_record(fit, n_frames: int, **extra) -> dict[str, Any]:
    """The plain-data record of :func:`diffusion_check` for ``fit()`` (a DiffusionResult); a TrajectoryError
    (a trajectory too short to fit) gives a record that is not converged, with the reason."""
    try:
        d = fit()
    except TrajectoryError as exc:
        return {"converged": False, "reason": f"not converged: {exc}", "frames": n_frames, **extra}
    return {"converged": bool(d.converged), "reason": d.reason, "D_nm2_per_ps": float(d.D),
            "D_err_nm2_per_ps": float(d.D_err), "fit_range_ps": [float(x) for x in d.fit_range],
            "error_method": d.error_method, "n_blocks": int(d.n_blocks), "frames": n_frames, **extra}


def diffusion_check(dataset, *, tolerance: float = 0.1, min_span: float = 3.0) -> dict[str, Any]:
    """Whether a dataset's molecular centre-of-mass MSD has reached the diffusive regime, as plain data:
    ``converged``, ``reason``, ``D_nm2_per_ps``, ``D_err_nm2_per_ps``, ``fit_range_ps``, ``error_method`` and
    ``n_blocks`` (blocks behind the block error, 0 for none; see :func:`molecular_diffusion`).  A trajectory too
    short to fit is reported as not converged, with the reason.
    This is the check with which :func:`openmm_cgml.workflows.run_reference` extends a production
    (``max_production``)."""
    ds = _open(dataset)
    return _check_record(lambda: molecular_diffusion(ds, tolerance=tolerance, min_span=min_span)[1], ds.n_frames)


def species_diffusion_check(dataset, *, tolerance: float = 0.1, min_span: float = 3.0) -> dict[str, dict[str, Any]]:
    """:func:`diffusion_check` of each species (:func:`species_diffusion`): ``{species: record}``, each record with
    the keys of :func:`diffusion_check` and ``molecules`` (the species' molecule count).  A species (or a whole
    trajectory) too short to fit is reported as not converged, with the reason."""
    ds = _open(dataset)
    com = functools.cache(lambda: _molecular_com(ds)[0])  # once for all species (a failure is not cached)
    return {name: _check_record(lambda idx=idx: _com_diffusion(com(), ds.time, idx, fit_range=None, n_blocks=5,
                                                               tolerance=tolerance, min_span=min_span)[1],
                                ds.n_frames, molecules=int(idx.size))
            for name, idx in _species_molecules(ds).items()}


def run_temperature(dataset) -> float:
    """The temperature (K) a dataset's run held: ``metadata["temperature_K"]`` or its recorded thermostat's
    (:func:`openmm_cgml.dataset.recorded_temperature`)."""
    from ..dataset import recorded_temperature

    value = recorded_temperature(dataset)
    if value is None:
        raise TrajectoryError("the dataset records no temperature (metadata 'temperature_K' or 'thermostat'), which "
                              "the Yeh-Hummer correction needs")
    return value


def thermostat_check(reference, model, *, allow_mismatch: bool = False) -> tuple[bool, str]:
    """Whether alpha = D_model / D_ref may be computed from these runs' thermostats, and the message.

    Refused when the recorded thermostats (:func:`~openmm_cgml.thermostat.recorded_thermostat`) are unknown, give
    different transport (:func:`~openmm_cgml.thermostat.same_thermostat`), or damp transport (Langevin: D then
    depends on the friction, not only on the model), unless ``allow_mismatch``.
    """
    th = {n: recorded_thermostat(d.metadata) for n, d in (("reference", reference), ("model", model))}
    names = f"reference {describe_thermostat(th['reference'])}, model {describe_thermostat(th['model'])}"
    problems = []
    if None in th.values():
        problems.append("a thermostat is unknown")
    elif not same_thermostat(th["reference"], th["model"]):
        problems.append("the thermostats differ")
    damping = [n for n, t in th.items() if t is not None and t["kind"] not in TRANSPORT_SAFE]
    if damping:
        problems.append(f"{' and '.join(damping)} ran under a thermostat that damps transport")
    if not problems:
        return True, f"thermostats: {names}"
    text = f"{'; '.join(problems)} ({names})"
    if allow_mismatch:
        return True, f"thermostat mismatch allowed: {text}"
    return False, (f"alpha refused: {text}; measure both runs under a global thermostat or NVE "
                   "(thermostat kind bussi, nose-hoover or nve), or set allow_thermostat_mismatch: true")


def _ratio(x: float, y: float) -> float:
    return x / y if y != 0 else float("nan")


def _as_runs(x) -> list:
    runs = list(x) if isinstance(x, (list, tuple)) else [x]
    if not runs:
        raise TrajectoryError("no dataset given")
    return runs


def production_density_note(dataset) -> str:
    """For a production at a fixed density taken from a preceding NPT run (``metadata["npt_density_series_g_cm3"]``,
    an AA reference and the datasets mapped from it): ``"; NVT at the NPT mean density 0.7041 +/- 0.0035 g/cm^3
    (s.e.), which D depends on"``; empty otherwise.

    The standard error of that mean (second half of the NPT series, with its statistical inefficiency) is an error
    of the production's density that the D error does not contain: a liquid's D can depend steeply on density
    (the demo liquid: the results page), so independent runs scatter by more than their D errors while alpha,
    whose CG run shares the AA density, does not."""
    meta = dataset.metadata
    series = meta.get("npt_density_series_g_cm3") or []
    if meta.get("ensemble") != "nvt" or len(series) < 4:
        return ""
    est = mean_with_error(series[len(series) // 2:])
    return (f"; NVT at the NPT mean density {est.value:.4f} +/- {est.error:.2g} g/cm^3 (s.e. of the mean), "
            "which D depends on")


def _diffusion_rows(references: list, models: list, *, fit_range, viscosity, allow_thermostat_mismatch,
                    n_blocks: int) -> tuple[list[ComparisonRow], dict]:
    """The D rows (uncorrected and, with viscosities, Yeh-Hummer corrected) and the alpha row."""
    nan = float("nan")
    sides = {"reference": references, "model": models}
    per_run = {n: [molecular_diffusion(d, fit_range=fit_range, n_blocks=n_blocks) for d in runs]
               for n, runs in sides.items()}
    fits = {n: combine_replicas([f for _, f in v]) for n, v in per_run.items()}
    thermo = {n: describe_thermostat(recorded_thermostat(runs[0].metadata)) for n, runs in sides.items()}

    density = {n: production_density_note(runs[0]) for n, runs in sides.items()}

    def _note(n: str, fit: DiffusionResult, extra: str = "") -> str:
        reps = f"{fit.n_replicas} replicas, " if fit.n_replicas > 1 else ""
        method = fit.error_method
        if method == "particles" and fit.n_replicas <= 1:  # molecules are not independent over long lags
            method = ("particles only (no block error: the fit window is too long for blocks of this run; the "
                      "spread between independent runs can be larger: give replicas)")
        return f"{thermo[n]}; {reps}error {method}; {fit.reason}{extra}{density[n]}"

    a, b = fits["reference"], fits["model"]
    rows = [ComparisonRow("D (molecular COM, simulated box)", "nm**2/ps", a.D, a.D_err, b.D, b.D_err,
                          "model / reference", _ratio(b.D, a.D), reference_note=_note("reference", a),
                          model_note=_note("model", b),
                          note="" if viscosity else "finite size not corrected (no viscosity given)")]
    corrected = None
    if viscosity:
        missing = [n for n in sides if viscosity.get(n) is None]
        if missing:
            raise TrajectoryError(f"viscosity: give both 'reference' and 'model' (missing {missing}): the "
                                  "Yeh-Hummer correction is applied to both runs alike, each with its own viscosity")
        corrected = {}
        for n, runs in sides.items():
            corr = [yeh_hummer_correction(run_temperature(d), viscosity[n], d.box) for d in runs]
            corrected[n] = combine_replicas([apply_finite_size_correction(f, c) for (_, f), c in zip(per_run[n], corr)])
        ca, cb = corrected["reference"], corrected["model"]
        rows.append(ComparisonRow(
            "D (molecular COM, Yeh-Hummer corrected)", "nm**2/ps", ca.D, ca.D_err, cb.D, cb.D_err, "model / reference",
            _ratio(cb.D, ca.D),
            reference_note=_note("reference", ca, f"; eta {viscosity['reference']}, +{ca.finite_size_correction:.3g}"),
            model_note=_note("model", cb, f"; eta {viscosity['model']}, +{cb.finite_size_correction:.3g}")))
        a, b = ca, cb
    allowed, message = thermostat_check(references[0], models[0], allow_mismatch=allow_thermostat_mismatch)
    basis = "Yeh-Hummer corrected D" if corrected else "D of the simulated boxes (finite size not corrected)"
    if allowed and not (a.D > 0 and b.D > 0):
        allowed, message = False, f"alpha not computed: a D is not positive (reference {a.D:.3g}, model {b.D:.3g})"
    if not allowed:
        logger.warning("%s", message)
        rows.append(ComparisonRow("alpha", "1", nan, nan, nan, nan, f"D_model/D_ref ({basis})", nan, "", "",
                                  note=message))
        return rows, per_run
    alpha = b.D / a.D
    alpha_err = abs(alpha) * float(np.hypot(a.D_err / a.D, b.D_err / b.D))
    unconverged = [n for n, f in (("reference", a), ("model", b)) if not f.converged]
    note = message
    if unconverged:
        note = f"not converged ({' and '.join(unconverged)}: see D); {message}"
        logger.warning("alpha = %.3g from D not in the diffusive regime (%s)", alpha, ", ".join(unconverged))
    rows.append(ComparisonRow("alpha", "1", nan, nan, alpha, alpha_err, f"D_model/D_ref ({basis})", alpha, "", "s.e.",
                              note=note))
    return rows, per_run


def _common_r_max(*datasets, r_max: float | None) -> float:
    half = min(perpendicular_widths(b).min() for d in datasets for b in d.box) / 2.0
    if r_max is None:
        return min(1.5, half)
    if r_max > half:
        raise TrajectoryError(f"r_max = {r_max} nm exceeds half the smallest box width of the runs ({half:.4g} nm)")
    return r_max


def _bonded_classes(dataset, types) -> dict[tuple, dict[str, np.ndarray]]:
    bonds = np.asarray(dataset.topology_data.get("bonds", []), dtype=np.int64).reshape(-1, 2)
    out: dict[tuple, dict[str, np.ndarray]] = {}
    if bonds.size == 0:
        return out
    for kind, idx in (("bond", bonds), ("angle", enumerate_angles(bonds)), ("dihedral", enumerate_dihedrals(bonds))):
        for row in idx:
            key = tuple(types[row])
            key = min(key, key[::-1])
            out.setdefault((kind, *key), []).append(row)
    return {k: np.array(v) for k, v in out.items()}


def compare_runs(reference, model, *, r_max: float | None = None, n_bins: int = 100, fit_range=None,
                 viscosity: dict | None = None, allow_thermostat_mismatch: bool = False, n_blocks: int = 5,
                 progress: bool = False) -> Comparison:
    """Compare structure, density and diffusion of ``model`` with ``reference`` (see the module docstring).

    ``reference`` and ``model`` are datasets or lists of independent replicas (structure and density from the
    first, D averaged over all with an error covering their spread).  ``viscosity``: ``{"reference": eta,
    "model": eta}`` (Pa s or unit strings such as ``"0.5 mPa*s"``) adds Yeh-Hummer corrected D and bases alpha on
    them.  alpha is refused (NaN, with the reason in the row's note) between runs whose thermostats give
    different or damped transport unless ``allow_thermostat_mismatch``.
    """
    references, models = _as_runs(reference), _as_runs(model)
    reference, model = references[0], models[0]
    for name, d in [("reference", r) for r in references] + [("model", m) for m in models]:
        if d.n_frames == 0:
            raise TrajectoryError(f"the {name} dataset has zero frames")
    r_max = _common_r_max(reference, model, r_max=r_max)
    rows: list[ComparisonRow] = []
    nan = float("nan")
    types_ref, types_mod = particle_types(reference), particle_types(model)
    mol_ref, mol_mod = molecule_indices(reference), molecule_indices(model)
    common = sorted(set(types_ref) & set(types_mod))
    rdfs: dict[Any, tuple[RDFResult, RDFResult]] = {}
    if common:
        pairs = [(a, b) for i, a in enumerate(common) for b in common[i:]]
        kind = "inter" if (np.bincount(mol_ref).max() > 1 or np.bincount(mol_mod).max() > 1) else "all"
        kw = dict(pairs=pairs, r_max=r_max, n_bins=n_bins, kind=kind, progress=progress)
        g_ref = compute_rdf(reference.positions, reference.box, types_ref, molecule_index=mol_ref, **kw)
        g_mod = compute_rdf(model.positions, model.box, types_mod, molecule_index=mol_mod, **kw)
        for p in pairs:
            rdfs[p] = (g_ref[p], g_mod[p])
            rows.append(ComparisonRow(f"g_{kind}({p[0]}-{p[1]})", "1", nan, nan, nan, nan, "rms difference",
                                      rdf_difference(g_ref[p], g_mod[p])))
    else:
        hint = ""
        if bool(reference.metadata.get("mapping")) != bool(model.metadata.get("mapping")):
            hint = (" (only one run carries its CG mapping, which types the beads: record CG runs with "
                    "run_simulation(..., metadata={'mapping': mapping.to_data()}), as cgml demo does)")
        logger.warning("the runs share no particle type (reference %s, model %s): only molecular RDFs and no bonded "
                       "distributions are compared%s", sorted(set(types_ref))[:8], sorted(set(types_mod))[:8], hint)
    com = {}
    for name, d, mol in (("reference", reference, mol_ref), ("model", model, mol_mod)):
        com[name] = molecule_centers(d.positions, mol, d.masses, box=d.box)
    g_com = [compute_rdf(com[n], d.box, r_max=r_max, n_bins=n_bins)[(0, 0)]
             for n, d in (("reference", reference), ("model", model))]
    rdfs[("COM", "COM")] = tuple(g_com)
    rows.append(ComparisonRow("g(COM-COM)", "1", nan, nan, nan, nan, "rms difference", rdf_difference(*g_com)))

    distributions: dict[tuple, tuple[Distribution, Distribution]] = {}
    cls_ref, cls_mod = _bonded_classes(reference, types_ref), _bonded_classes(model, types_mod)
    for key in sorted(set(cls_ref) & set(cls_mod)):
        fn = {"bond": compute_bonds, "angle": compute_angles, "dihedral": compute_dihedrals}[key[0]]
        v_ref = fn(reference.positions, cls_ref[key], reference.box)
        v_mod = fn(model.positions, cls_mod[key], model.box)
        if key[0] == "dihedral":  # periodic: the full circle, so both histograms share it
            lo, hi = -np.pi, np.pi + 1e-9
        else:
            lo, hi = min(v_ref.min(), v_mod.min()), max(v_ref.max(), v_mod.max()) + 1e-9
        p = compute_distribution(v_ref, bins=60, value_range=(lo, hi))
        q = compute_distribution(v_mod, bins=60, value_range=(lo, hi))
        distributions[key] = (p, q)
        unit = "nm" if key[0] == "bond" else "rad"
        rows.append(ComparisonRow(f"{key[0]} {'-'.join(key[1:])}", unit, p.mean, p.std, q.mean, q.std,
                                  "overlap", distribution_overlap(p, q), "sd", "sd"))

    if common:
        rows.extend(_manybody_rows(reference, model, types_ref, mol_ref, mol_mod, r_max=r_max, n_bins=n_bins,
                                   n_blocks=n_blocks, distributions=distributions))
    rows.extend(_chain_rows(reference, model, n_blocks=n_blocks, distributions=distributions))

    check = model.metadata.get("temperature_check")  # written by openmm_cgml.simulation.run_simulation
    if isinstance(check, dict) and check.get("mean_temperature_K") is not None:
        thermostat = float(model.metadata.get("temperature_K", nan))
        held = check.get("held", True)
        rows.append(ComparisonRow("kinetic temperature (model run)", "K", thermostat, nan, check["mean_temperature_K"],
                                  check["temperature_sem_K"], "model - thermostat",
                                  check["mean_temperature_K"] - thermostat, "", "s.e.",
                                  note="" if held else "the run did not hold its thermostat's temperature"))
        if not held:
            logger.warning("the model run did not hold its thermostat's %.1f K (mean kinetic temperature %.1f K): its "
                           "structure and dynamics below are not those at %.1f K; rerun it at a smaller timestep",
                           thermostat, check["mean_temperature_K"], thermostat)
    density = {n: density_timeseries(d.box, d.masses, d.time) for n, d in (("reference", reference), ("model", model))}
    cells = {}
    for n, series in density.items():
        fixed = np.ptp(series.density) <= 1e-9 * abs(series.density.mean())  # NVT: the box never changes
        cells[n] = (float(series.density.mean()), nan, "fixed (NVT)") if fixed else (
            series.average.value, series.average.error, "s.e.")
    (rv, re_, rk), (mv, me, mk) = cells["reference"], cells["model"]
    rows.append(ComparisonRow("density", "g/cm**3", rv, re_, mv, me, "model - reference", mv - rv, rk, mk))
    msd = {}
    try:
        drows, per_run = _diffusion_rows(references, models, fit_range=fit_range, viscosity=viscosity,
                                         allow_thermostat_mismatch=allow_thermostat_mismatch, n_blocks=n_blocks)
    except TrajectoryError as exc:
        if viscosity and ("viscosity" in str(exc) or "temperature" in str(exc)):
            raise
        logger.warning("diffusion not compared: %s", exc)
    else:
        rows.extend(drows)
        msd = {n: v[0] for n, v in per_run.items()}
    return Comparison(rows=tuple(rows), rdfs=rdfs, distributions=distributions, msd=msd, density=density)


def local_structures(runs, molecule_indices, *, r_max: float, n_bins: int = 100, n_blocks: int = 5):
    """The many-body distributions of ``runs`` (datasets; the first the reference) as the comparison computes them:
    neighbours within the first minimum of the reference's intermolecular g(r) over all its particles (``n_bins``
    bins to ``r_max``), every run's coordination histogram over the same counts.  Returns ``(r_cut, [LocalStructure
    of each run])``; raises TrajectoryError where the reference's g(r) has no first minimum in range."""
    from ._checks import as_boxes, box_volumes
    from .manybody import compute_local_structure, default_max_coordination, first_minimum

    reference = runs[0]
    g = compute_rdf(reference.positions, reference.box, molecule_index=molecule_indices[0], r_max=r_max,
                    n_bins=n_bins, kind="inter")[(0, 0)]
    r_cut = first_minimum(g)
    widest = max(default_max_coordination(d.positions.shape[1], float(box_volumes(as_boxes(d.box[:1], 1))[0]), r_cut)
                 for d in runs)
    return r_cut, [compute_local_structure(d.positions, d.box, m, r_cut, n_blocks=n_blocks, max_coordination=widest)
                   for d, m in zip(runs, molecule_indices)]


def _manybody_rows(reference, model, types_ref, mol_ref, mol_mod, *, r_max: float, n_bins: int, n_blocks: int,
                   distributions: dict) -> list[ComparisonRow]:
    """The many-body rows (module docstring): the cutoff is the first minimum of the reference's intermolecular
    g(r) over all its particles; the curves go into ``distributions`` under ``("3-body angle",)`` and
    ``("coordination",)``."""
    from .manybody import overlap_with_error

    if np.bincount(mol_ref).size < 2 or np.bincount(mol_mod).size < 2:
        return []
    try:
        r_cut, local = local_structures([reference, model], [mol_ref, mol_mod], r_max=r_max, n_bins=n_bins,
                                        n_blocks=n_blocks)
    except TrajectoryError as exc:
        logger.warning("many-body structure not compared: %s", exc)
        return []
    rows = []
    for key, attr, unit, blocks in (("3-body angle", "angles", "rad", "angle_blocks"),
                                    ("coordination", "coordination", "1", "coordination_blocks")):
        p, q = getattr(local[0], attr), getattr(local[1], attr)
        value, err = overlap_with_error(p, q, getattr(local[0], blocks), getattr(local[1], blocks))
        distributions[(key,)] = (p, q)
        rows.append(ComparisonRow(f"{key} (inter, r < {r_cut:.3g} nm)", unit, p.mean, p.std, q.mean, q.std, "overlap",
                                  value, "sd", "sd", value_err=err,
                                  note="jackknife s.e. over blocks" if np.isfinite(err) else ""))
    return rows


def _dataset_bonds(dataset) -> np.ndarray:
    """The bonded particle pairs of a dataset, as :func:`_bonded_classes` reads them (its topology's bonds), or,
    for a coarse-grained dataset whose topology has none, its CG topology's."""
    bonds = np.asarray(dataset.topology_data.get("bonds", []), dtype=np.int64).reshape(-1, 2)
    if bonds.size == 0 and getattr(dataset, "kind", None) == "coarse-grained":
        from ..topology import CGTopology

        try:
            bonds = np.asarray(CGTopology.from_dataset(dataset, frame=None).bonds, dtype=np.int64).reshape(-1, 2)
        except CGMLError as exc:
            logger.debug("no CG topology to read bonds from: %s", exc)
    return bonds


def chain_molecules(dataset, *, min_beads: int = MIN_CHAIN_BEADS) -> dict[tuple[str, int], np.ndarray]:
    """The molecules of a dataset that are linear chains, by molecule type.

    A molecule (residue, :func:`molecule_indices`) is a chain when it has at least ``min_beads`` particles and its
    bonds (the dataset's topology's, as the bonded distributions use) join them into one unbranched path: every
    particle has at most two bonded neighbours in the molecule, and the bonds connect them all without a ring.

    Returns
    -------
    dict
        ``{(residue name, n_beads): array (n_chains, n_beads)}`` of particle indices in bond order along each
        chain (from the end with the lower index); no entry for molecules that are not chains (all-atom
        molecules, with their hydrogens, never are).
    """
    mol = molecule_indices(dataset)
    n = mol.size
    names = [str(r.get("name", "")) for c in dataset.topology_data["chains"] for r in c["residues"]]
    bonds = _dataset_bonds(dataset)
    if n == 0 or bonds.size == 0:
        return {}
    bonds = bonds[(bonds.min(axis=1) >= 0) & (bonds.max(axis=1) < n)]
    bonds = bonds[(mol[bonds[:, 0]] == mol[bonds[:, 1]]) & (bonds[:, 0] != bonds[:, 1])]
    bonds = np.unique(np.sort(bonds, axis=1), axis=0)
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for a, b in bonds.tolist():
        neighbours[a].append(b)
        neighbours[b].append(a)
    counts = np.bincount(mol)
    order = np.argsort(mol, kind="stable")
    out: dict[tuple[str, int], list[list[int]]] = {}
    for m, idx in enumerate(np.split(order, np.cumsum(counts)[:-1])):
        if idx.size < min_beads:
            continue
        path, _ = linear_path(idx, neighbours)
        if path is not None:
            out.setdefault((names[m] if m < len(names) else "", int(idx.size)), []).append(path)
    return {key: np.asarray(v, dtype=np.int64) for key, v in out.items()}


def _block_densities(values: np.ndarray, edges: np.ndarray, n_blocks: int) -> np.ndarray:
    """Probability densities of contiguous blocks of frames of ``values`` (n_frames, n_items) on ``edges``."""
    k = min(n_blocks, values.shape[0])
    if k < 2:
        return np.empty((0, edges.size - 1))
    width = np.diff(edges)
    return np.array([np.histogram(b, bins=edges)[0] / (b.size * width) for b in np.array_split(values, k)])


def _chain_rows(reference, model, *, n_blocks: int, distributions: dict) -> list[ComparisonRow]:
    """The chain rows (module docstring) for every chain molecule type found in both runs (by residue name and
    length; a single chain type on each side of the same length is paired whatever its name).  The Rg
    histograms go into ``distributions`` under ``("Rg", label)``."""
    from .chains import chain_dimensions
    from .manybody import overlap_with_error

    ref, mod = chain_molecules(reference), chain_molecules(model)
    pairs = [(k, k) for k in sorted(set(ref) & set(mod))]
    if not pairs and len(ref) == 1 and len(mod) == 1 and next(iter(ref))[1] == next(iter(mod))[1]:
        pairs = [(next(iter(ref)), next(iter(mod)))]
    left = sorted({f"{k[0]} ({k[1]} beads)" for k in set(ref) | set(mod)} -
                  {f"{k[0]} ({k[1]} beads)" for pair in pairs for k in pair})
    if left:
        logger.info("chains found in one run only, not compared: %s", ", ".join(left))
    rows: list[ComparisonRow] = []
    for kr, km in pairs:
        label = f"{kr[0]}, {kr[1]} beads" if kr[0] == km[0] else f"{kr[0]} / {km[0]}, {kr[1]} beads"
        runs = ((reference, ref[kr]), (model, mod[km]))
        try:
            a, b = (chain_dimensions(d.positions, idx, d.box, masses=d.masses, bins=_CHAIN_BINS, n_blocks=n_blocks)
                    for d, idx in runs)
        except TrajectoryError as exc:
            logger.warning("chains %s not compared: %s", label, exc)
            continue
        for quantity, attr in (("Rg^2", "rg2"), ("Ree^2", "ree2")):
            ea, eb = getattr(a, attr), getattr(b, attr)
            rows.append(ComparisonRow(
                f"{quantity} ({label})", "nm**2", ea.value, ea.error, eb.value, eb.error, "model - reference",
                eb.value - ea.value, value_err=float(np.hypot(ea.error, eb.error)),
                reference_note=f"{a.n_chains} chains x {a.n_frames} frames, error over {a.error_method}",
                model_note=f"{b.n_chains} chains x {b.n_frames} frames, error over {b.error_method}"))
        lo, hi = min(a.rg.min(), b.rg.min()), max(a.rg.max(), b.rg.max())
        value_range = (float(lo), float(hi) + 1e-9 * max(1.0, float(hi)))
        p = compute_distribution(a.rg, bins=_CHAIN_BINS, value_range=value_range, n_blocks=max(n_blocks, 1))
        q = compute_distribution(b.rg, bins=_CHAIN_BINS, value_range=value_range, n_blocks=max(n_blocks, 1))
        value, err = overlap_with_error(p, q, _block_densities(a.rg, p.edges, n_blocks),
                                        _block_densities(b.rg, q.edges, n_blocks))
        distributions[("Rg", label)] = (p, q)
        rows.append(ComparisonRow(f"Rg distribution ({label})", "nm", p.mean, p.std, q.mean, q.std, "overlap", value,
                                  "sd", "sd", value_err=err,
                                  note="jackknife s.e. over blocks" if np.isfinite(err) else ""))
        rows.append(_relaxation_row(label, runs))
    return rows


def _relaxation_row(label: str, runs) -> ComparisonRow:
    """The end-to-end relaxation row: tau (integral of the end-to-end vector autocorrelation) of both runs and
    tau_ref / tau_model, refused with a note while either autocorrelation has not decayed."""
    from .chains import end_to_end_autocorrelation

    nan = float("nan")
    quantity, metric = f"end-to-end relaxation tau ({label})", "reference / model (speed-up, as alpha)"
    corr = []
    for (d, idx), side in zip(runs, ("reference", "model")):
        try:
            with np.errstate(divide="ignore", invalid="ignore"):  # the KWW fit of a flat C(t) divides by zero
                corr.append(end_to_end_autocorrelation(d.positions, idx, d.time, box=d.box))
        except TrajectoryError as exc:
            logger.warning("end-to-end relaxation of the chains %s not compared (%s): %s", label, side, exc)
            return ComparisonRow(quantity, "ps", nan, nan, nan, nan, metric, nan, "", "",
                                 note=f"not computed from the {side}: {exc}")
    ca, cb = corr
    if not ca.decayed:
        note = (f"the reference is not relaxed: its end-to-end autocorrelation has not decayed below "
                f"{ca.threshold:.2g} within {ca.lag_times[-1]:.4g} ps (C = {ca.correlation[-1]:.2g}), so tau_ref = "
                f"{ca.tau_integral:.3g} ps is a lower bound and its Rg^2 and Ree^2 need not be equilibrium values; "
                "run the reference longer")
        logger.warning("chains %s: %s", label, note)
    elif not cb.decayed:
        note = (f"the model is not relaxed: its end-to-end autocorrelation has not decayed below {cb.threshold:.2g} "
                f"within {cb.lag_times[-1]:.4g} ps (C = {cb.correlation[-1]:.2g}), so tau_model = "
                f"{cb.tau_integral:.3g} ps is a lower bound; run the model longer")
        logger.warning("chains %s: %s", label, note)
    else:
        note = "tau: integral of the end-to-end autocorrelation to its first zero; each run in its own time"
    value = ca.tau_integral / cb.tau_integral if ca.decayed and cb.decayed and cb.tau_integral > 0 else nan
    return ComparisonRow(quantity, "ps", ca.tau_integral, nan, cb.tau_integral, nan, metric, value, "", "",
                         reference_note=ca.message, model_note=cb.message, note=note)


@dataclass(frozen=True)
class TemperatureComparison:
    """Diffusion over temperatures: D_ref(T), D_model(T), the two Arrhenius fits and the alpha(T) model.

    ``alpha_refused`` is the reason alpha(T) is not given (thermostats, see :func:`thermostat_check`), or ``""``;
    ``unconverged`` lists the runs whose D is not from a diffusive regime (``"reference at 300 K: ..."``).
    """

    temperatures: np.ndarray
    d_reference: np.ndarray
    d_reference_err: np.ndarray
    d_model: np.ndarray
    d_model_err: np.ndarray
    fit_reference: ArrheniusFit
    fit_model: ArrheniusFit
    alpha_refused: str = ""
    unconverged: tuple[str, ...] = ()

    def rows(self) -> list[ComparisonRow]:
        nan = float("nan")
        fr, fm = self.fit_reference, self.fit_model
        note = f"not converged: {'; '.join(self.unconverged)}" if self.unconverged else ""
        rows = [
            ComparisonRow("Ea (Arrhenius, D)", "kJ/mol", fr.activation_energy, fr.activation_energy_err,
                          fm.activation_energy, fm.activation_energy_err, "model - reference",
                          fm.activation_energy - fr.activation_energy, note=note),
            ComparisonRow("ln A (Arrhenius, D)", "ln(nm**2/ps)", fr.ln_prefactor, fr.ln_prefactor_err,
                          fm.ln_prefactor, fm.ln_prefactor_err, "model - reference", fm.ln_prefactor - fr.ln_prefactor,
                          note=note),
        ]
        for t, dr, er, dm, em in zip(self.temperatures, self.d_reference, self.d_reference_err, self.d_model,
                                     self.d_model_err):
            if self.alpha_refused:
                rows.append(ComparisonRow(f"alpha({t:g} K)", "1", nan, nan, nan, nan, "D_model/D_ref", nan, "", "",
                                          note=self.alpha_refused))
            else:
                rows.append(ComparisonRow(f"alpha({t:g} K)", "1", nan, nan, dm / dr, dm / dr * np.hypot(er / dr, em / dm),
                                          "D_model/D_ref (finite size not corrected)", dm / dr, "", "s.e.", note=note))
        return rows


def compare_temperatures(runs, *, fit_range=None, allow_thermostat_mismatch: bool = False,
                         n_blocks: int = 5) -> TemperatureComparison:
    """Fit Arrhenius laws to D(T) of both sides: ``runs`` is a sequence of (temperature K, reference, model).

    alpha(T) is refused (``alpha_refused``) when any pair's thermostats fail :func:`thermostat_check`.
    """
    runs = sorted(runs, key=lambda r: r[0])
    if len(runs) < 2:
        raise TrajectoryError(f"an Arrhenius comparison needs runs at 2 or more temperatures, got {len(runs)}")
    temps, dr, er, dm, em = [], [], [], [], []
    unconverged, refused = [], ""
    for t, ref, mod in runs:
        a = molecular_diffusion(ref, fit_range=fit_range, n_blocks=n_blocks)[1]
        b = molecular_diffusion(mod, fit_range=fit_range, n_blocks=n_blocks)[1]
        unconverged += [f"{n} at {t:g} K: {f.reason}" for n, f in (("reference", a), ("model", b)) if not f.converged]
        allowed, message = thermostat_check(ref, mod, allow_mismatch=allow_thermostat_mismatch)
        if not allowed and not refused:
            refused = f"{message} (at {t:g} K)"
            logger.warning("%s", refused)
        temps.append(t)
        dr.append(a.D)
        er.append(a.D_err)
        dm.append(b.D)
        em.append(b.D_err)
    temps, dr, er, dm, em = map(np.asarray, (temps, dr, er, dm, em))
    return TemperatureComparison(temps, dr, er, dm, em, fit_arrhenius(temps, dr, er), fit_arrhenius(temps, dm, em),
                                 alpha_refused=refused, unconverged=tuple(unconverged))


def plot_comparison(comparison: Comparison, directory, temperatures: TemperatureComparison | None = None) -> list[Path]:
    """Write the comparison figures (PNG, with error bars) into ``directory``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._io import atomic_path

    directory = Path(directory)
    written = []

    def _save(fig, name):
        path = directory / name
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        written.append(path)

    n = len(comparison.rdfs)
    cols = min(3, n)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4.5 * cols, 3.3 * ((n + cols - 1) // cols)),
                             squeeze=False)
    for ax, (pair, (ref, mod)) in zip(axes.flat, comparison.rdfs.items()):
        for res, label in ((ref, "reference"), (mod, "model")):
            ax.plot(res.r, res.g, label=label)
            ax.fill_between(res.r, res.g - res.g_err, res.g + res.g_err, alpha=0.3)
        ax.set(title=f"{pair[0]}-{pair[1]} ({ref.kind})", xlabel="r (nm)", ylabel="g(r)")
        ax.legend()
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    _save(fig, "rdf.png")

    if comparison.distributions:
        n = len(comparison.distributions)
        cols = min(3, n)
        fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4.5 * cols, 3.3 * ((n + cols - 1) // cols)),
                                 squeeze=False)
        for ax, (key, (p, q)) in zip(axes.flat, comparison.distributions.items()):
            for d, label in ((p, "reference"), (q, "model")):
                ax.errorbar(d.centers, d.density, yerr=d.density_err, label=label, fmt="-", capsize=1)
            unit = {"bond": "nm", "Rg": "nm", "coordination": "neighbours"}.get(key[0], "rad")
            ax.set(title=" ".join(map(str, key)), xlabel=f"{key[0]} ({unit})",
                   ylabel="probability density" + ("" if unit == "neighbours" else f" (1/{unit})"))
            ax.legend()
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        fig.tight_layout()
        _save(fig, "distributions.png")

    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    axes = axes.ravel()
    for name, series in comparison.density.items():
        fixed = np.ptp(series.density) <= 1e-9 * abs(series.density.mean())  # NVT: the box never changes
        label = (f"{name}: {series.density.mean():.4g} g/cm$^3$, fixed volume (NVT)" if fixed
                 else f"{name}: {series.average:.4g} g/cm$^3$")
        axes[0].plot(series.times, series.density, label=label)
    axes[0].set(xlabel="t (ps)", ylabel="density (g/cm$^3$)", title="density")
    axes[0].legend(fontsize=8)
    for (name, (msd, fit)), color in zip(comparison.msd.items(), ("C0", "C1")):
        flag = "" if fit.converged else " (not converged)"
        axes[1].errorbar(msd.lag_times[1:], msd.msd[1:], yerr=msd.msd_err[1:], color=color, fmt="-", capsize=1,
                         label=f"{name}: D = {fit.D:.3g} ± {fit.D_err:.2g} nm$^2$/ps{flag}")
        t = np.linspace(*fit.fit_range, 20)
        axes[1].plot(t, 6 * fit.D * t + fit.intercept, "k--", lw=1)
        axes[1].axvspan(*fit.fit_range, color=color, alpha=0.12)
        if fit.regime is not None:
            axes[2].plot(fit.regime.lag_times, fit.regime.local_slope, "o-", ms=3, color=color, label=name)
            axes[2].axvspan(*fit.fit_range, color=color, alpha=0.12)
            tol = fit.regime.tolerance
            axes[2].axhspan(1 - tol, 1 + tol, color="0.85", zorder=0)
    axes[1].set(xscale="log", yscale="log", xlabel="t (ps)", ylabel="COM MSD (nm$^2$)",
                title="shaded: fit windows")
    axes[1].legend(fontsize=8)
    axes[2].axhline(1.0, color="k", lw=0.8)
    axes[2].set(xscale="log", xlabel="t (ps)", ylabel="d ln MSD / d ln t",
                title="local slope (diffusive: grey band)")
    axes[2].legend(fontsize=8)
    # the model's MSD on its own time axis and on the rescaled one, t_AA = alpha t_CG (alpha = D_model / D_ref)
    if {"reference", "model"} <= set(comparison.msd):
        (ref_msd, ref_fit), (mod_msd, mod_fit) = comparison.msd["reference"], comparison.msd["model"]
        alpha = mod_fit.D / ref_fit.D if ref_fit.D > 0 else float("nan")
        axes[3].plot(ref_msd.lag_times[1:], ref_msd.msd[1:], color="C0", label="reference")
        axes[3].plot(mod_msd.lag_times[1:], mod_msd.msd[1:], color="C1", ls=":", label="model, CG time")
        if np.isfinite(alpha) and alpha > 0:
            axes[3].plot(mod_msd.lag_times[1:] * alpha, mod_msd.msd[1:], color="C1",
                         label=f"model, rescaled: t x alpha ({alpha:.3g})")
        axes[3].set(xscale="log", yscale="log", xlabel="t (ps)", ylabel="COM MSD (nm$^2$)",
                    title="time axes: CG and rescaled")
        axes[3].legend(fontsize=8)
    else:
        axes[3].set_visible(False)
    fig.tight_layout()
    _save(fig, "density_msd.png")

    if temperatures is not None:
        fig, ax = plt.subplots(figsize=(5, 3.8))
        inv_t = 1000.0 / temperatures.temperatures
        grid = np.linspace(temperatures.temperatures.min(), temperatures.temperatures.max(), 50)
        for d, e, fit, label in ((temperatures.d_reference, temperatures.d_reference_err, temperatures.fit_reference,
                                  "reference"), (temperatures.d_model, temperatures.d_model_err,
                                                 temperatures.fit_model, "model")):
            ax.errorbar(inv_t, d, yerr=e, fmt="o",
                        label=f"{label}: Ea = {fit.activation_energy:.3g} ± {fit.activation_energy_err:.2g} kJ/mol")
            ax.plot(1000.0 / grid, fit.predict(grid)[0], "--")
        ax.set(yscale="log", xlabel="1000 / T (1/K)", ylabel="D (nm$^2$/ps)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        _save(fig, "arrhenius.png")
    return written
