"""Comparison of a model (CG) run with its reference (AA or mapped-AA) run: table and figures.

Metrics (stated here once, used everywhere):

* RDF: root-mean-square difference of g(r) over the compared range, sqrt(int (g_model - g_ref)^2 dr / int dr)
  (:func:`~openmm_cgml.analysis.rdf_difference`), for every type pair present in both runs and for the
  molecular centres of mass.
* Bonded distributions (bonds, angles, dihedrals along CG bonds, per bead-type class): overlap coefficient
  int min(p_model, p_ref) dx (1 = identical).
* Density: model - reference (g/cm^3), each an equilibrated mean with a correlation-aware error.
* Kinetic temperature of the model run (when it was recorded by ``run_simulation``): model - thermostat, with
  a warning if the run did not hold it (its structure and dynamics are then those of another temperature).
* Dynamics: molecular centre-of-mass self-diffusion coefficients and alpha = D_model / D_ref.
* Over temperatures: Arrhenius Ea of both and the alpha(T) model.

Inputs are :class:`openmm_cgml.dataset.Dataset` objects (or anything with the same attributes); particle
types are the topology's atom names and each residue is a molecule.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import TrajectoryError
from ._checks import perpendicular_widths
from .arrhenius import ArrheniusFit, fit_arrhenius
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
from .msd import DiffusionResult, MSDResult, compute_msd, diffusion_coefficient, unwrap_positions
from .rdf import RDFResult, compute_rdf, rdf_difference

__all__ = ["ComparisonRow", "Comparison", "compare_runs", "molecular_diffusion", "compare_temperatures",
           "TemperatureComparison", "particle_types", "molecule_indices", "plot_comparison"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComparisonRow:
    """One line of the comparison table (NaN where not applicable)."""

    quantity: str
    unit: str
    reference: float
    reference_err: float
    model: float
    model_err: float
    metric: str
    value: float


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
        head = "| quantity | unit | reference | model | metric | value |\n|---|---|---|---|---|---|\n"
        lines = [f"| {r.quantity} | {r.unit} | {_pm(r.reference, r.reference_err)} | {_pm(r.model, r.model_err)} "
                 f"| {r.metric} | {_num(r.value)} |" for r in self.rows]
        return head + "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["quantity", "unit", "reference", "reference_err", "model", "model_err", "metric", "value"])
        for r in self.rows:
            writer.writerow([r.quantity, r.unit, r.reference, r.reference_err, r.model, r.model_err, r.metric, r.value])
        return buf.getvalue()


def _num(x: float) -> str:
    return "" if not np.isfinite(x) else f"{x:.4g}"


def _pm(x: float, e: float) -> str:
    if not np.isfinite(x):
        return ""
    return f"{x:.4g} ± {e:.2g}" if np.isfinite(e) else f"{x:.4g}"


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


def molecular_diffusion(dataset, *, fit_range=None) -> tuple[MSDResult, DiffusionResult]:
    """Self-diffusion of molecular centres of mass (nm^2/ps) from a dataset, with its error over molecules."""
    mol = molecule_indices(dataset)
    com = molecule_centers(dataset.positions, mol, dataset.masses, box=dataset.box)
    com = unwrap_positions(com, dataset.box)
    mol_masses = np.bincount(np.unique(mol, return_inverse=True)[1], weights=dataset.masses)
    msd = compute_msd(com, dataset.time, masses=mol_masses, remove_com=True)
    return msd, diffusion_coefficient(msd, fit_range=fit_range)


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
                 progress: bool = False) -> Comparison:
    """Compare structure, density and diffusion of ``model`` with ``reference`` (see the module docstring)."""
    for name, d in (("reference", reference), ("model", model)):
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
                                  "overlap", distribution_overlap(p, q)))

    check = model.metadata.get("temperature_check")  # written by openmm_cgml.simulation.run_simulation
    if isinstance(check, dict) and check.get("mean_temperature_K") is not None:
        thermostat = float(model.metadata.get("temperature_K", nan))
        rows.append(ComparisonRow("kinetic temperature (model run)", "K", thermostat, nan, check["mean_temperature_K"],
                                  check["temperature_sem_K"], "model - thermostat",
                                  check["mean_temperature_K"] - thermostat))
        if not check.get("held", True):
            logger.warning("the model run did not hold its thermostat's %.1f K (mean kinetic temperature %.1f K): its "
                           "structure and dynamics below are not those at %.1f K; rerun it at a smaller timestep",
                           thermostat, check["mean_temperature_K"], thermostat)
    density = {n: density_timeseries(d.box, d.masses, d.time) for n, d in (("reference", reference), ("model", model))}
    dr, dm = density["reference"].average, density["model"].average
    rows.append(ComparisonRow("density", "g/cm**3", dr.value, dr.error, dm.value, dm.error, "model - reference",
                              dm.value - dr.value))
    msd = {}
    try:
        msd["reference"] = molecular_diffusion(reference, fit_range=fit_range)
        msd["model"] = molecular_diffusion(model, fit_range=fit_range)
    except TrajectoryError as exc:
        logger.warning("diffusion not compared: %s", exc)
    if len(msd) == 2:
        a, b = msd["reference"][1], msd["model"][1]
        alpha = b.D / a.D
        alpha_err = abs(alpha) * np.hypot(a.D_err / a.D, b.D_err / b.D)
        rows.append(ComparisonRow("D (molecular COM)", "nm**2/ps", a.D, a.D_err, b.D, b.D_err, "alpha = D_model/D_ref",
                                  alpha))
        rows.append(ComparisonRow("alpha", "1", nan, nan, alpha, alpha_err, "alpha error", alpha_err))
    return Comparison(rows=tuple(rows), rdfs=rdfs, distributions=distributions, msd=msd, density=density)


@dataclass(frozen=True)
class TemperatureComparison:
    """Diffusion over temperatures: D_ref(T), D_model(T), the two Arrhenius fits and the alpha(T) model."""

    temperatures: np.ndarray
    d_reference: np.ndarray
    d_reference_err: np.ndarray
    d_model: np.ndarray
    d_model_err: np.ndarray
    fit_reference: ArrheniusFit
    fit_model: ArrheniusFit

    def rows(self) -> list[ComparisonRow]:
        nan = float("nan")
        fr, fm = self.fit_reference, self.fit_model
        return [
            ComparisonRow("Ea (Arrhenius, D)", "kJ/mol", fr.activation_energy, fr.activation_energy_err,
                          fm.activation_energy, fm.activation_energy_err, "model - reference",
                          fm.activation_energy - fr.activation_energy),
            ComparisonRow("ln A (Arrhenius, D)", "ln(nm**2/ps)", fr.ln_prefactor, fr.ln_prefactor_err,
                          fm.ln_prefactor, fm.ln_prefactor_err, "model - reference", fm.ln_prefactor - fr.ln_prefactor),
            *[ComparisonRow(f"alpha({t:g} K)", "1", nan, nan, dm / dr, dm / dr * np.hypot(er / dr, em / dm),
                            "D_model/D_ref", dm / dr)
              for t, dr, er, dm, em in zip(self.temperatures, self.d_reference, self.d_reference_err, self.d_model,
                                           self.d_model_err)],
        ]



def compare_temperatures(runs, *, fit_range=None) -> TemperatureComparison:
    """Fit Arrhenius laws to D(T) of both sides: ``runs`` is a sequence of (temperature K, reference, model)."""
    runs = sorted(runs, key=lambda r: r[0])
    if len(runs) < 2:
        raise TrajectoryError(f"an Arrhenius comparison needs runs at 2 or more temperatures, got {len(runs)}")
    temps, dr, er, dm, em = [], [], [], [], []
    for t, ref, mod in runs:
        a, b = molecular_diffusion(ref, fit_range=fit_range)[1], molecular_diffusion(mod, fit_range=fit_range)[1]
        temps.append(t)
        dr.append(a.D)
        er.append(a.D_err)
        dm.append(b.D)
        em.append(b.D_err)
    temps, dr, er, dm, em = map(np.asarray, (temps, dr, er, dm, em))
    return TemperatureComparison(temps, dr, er, dm, em, fit_arrhenius(temps, dr, er), fit_arrhenius(temps, dm, em))


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
            ax.set(title=" ".join(map(str, key)), xlabel="nm" if key[0] == "bond" else "rad", ylabel="density")
            ax.legend()
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        fig.tight_layout()
        _save(fig, "distributions.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, series in comparison.density.items():
        axes[0].plot(series.times, series.density, label=f"{name}: {series.average:.4g} g/cm$^3$")
    axes[0].set(xlabel="t (ps)", ylabel="density (g/cm$^3$)")
    axes[0].legend()
    for name, (msd, fit) in comparison.msd.items():
        axes[1].errorbar(msd.lag_times[1:], msd.msd[1:], yerr=msd.msd_err[1:], label=f"{name}: D = {fit.D:.3g} nm$^2$/ps",
                         fmt="-", capsize=1)
        t = np.linspace(*fit.fit_range, 20)
        axes[1].plot(t, 6 * fit.D * t + fit.intercept, "k--", lw=1)
    axes[1].set(xscale="log", yscale="log", xlabel="t (ps)", ylabel="COM MSD (nm$^2$)")
    axes[1].legend()
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
