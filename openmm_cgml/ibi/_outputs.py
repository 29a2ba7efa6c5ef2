"""What an IBI run writes: tables for OpenMM (JSON), GROMACS and LAMMPS, the bonded terms, the convergence
log (JSON, CSV) and plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._io import atomic_path, atomic_write_text, package_versions
from ..forces.tabulated import write_openmm_tables
from ..potential import FORCE_FIELD_FORMAT
from ._settings import IBIResult, IBISettings
from ._tables import write_gromacs_table

__all__ = ["write_outputs", "plot_convergence"]


def write_outputs(result: IBIResult, settings: IBISettings, out: Path) -> None:
    """Tables for OpenMM (JSON), GROMACS (``table_A_B.xvg``), LAMMPS; log (JSON, CSV) and plot."""
    out.mkdir(parents=True, exist_ok=True)
    s = settings
    settings = s.to_data()
    write_openmm_tables(out / "pair_tables.json", result.term, settings=settings)
    for (a, b), u in result.potentials.items():  # for GROMACS 2019 and older (see write_gromacs_table)
        write_gromacs_table(out / f"table_{a}_{b}.xvg", np.concatenate([result.r, [s.cutoff]]),
                            np.concatenate([u, [0.0]]))
    from ..export import write_lammps_pair_tables

    # the pair tables alone; `cgml export` writes the complete LAMMPS (and GROMACS) simulation around them
    write_lammps_pair_tables(out / "pair_tables.lammps", result.term,
                             sorted({t for key in result.potentials for t in key}))
    # as held fixed, or as refined (refine_bonded); a neural base model is kept as its bundle (cgml ibi base_model)
    bonded = [t for t in result.bonded_terms if t.kind != "neural"]
    if bonded:
        atomic_write_text(out / "bonded_terms.json", json.dumps(
            {"format": FORCE_FIELD_FORMAT, "format_version": 1, "refined": s.refine_bonded,
             "best_iteration": result.best_iteration, "terms": [t.to_data() for t in bonded],
             "package_versions": package_versions()}, indent=1))
    log = {"settings": settings, "converged": result.converged, "best_iteration": result.best_iteration,
           "stop_reason": result.stop_reason,
           "metric": "per pair: RMS of g - g_target over the grid 0..cutoff; overall: max over pairs",
           "noise": "per pair: sampling noise of g (RMS over the grid of its block standard error) of the target "
                    "(target_noise) and of the iteration's frames (sample_noise); noise_floor = "
                    "sqrt(target_noise^2 + sample_noise^2); noise_ratio: max over pairs of error / noise_floor",
           "history": result.history, "package_versions": package_versions()}
    atomic_write_text(out / "convergence.json", json.dumps(log, indent=1))
    overlaps = list(result.history[0].get("bonded_overlap", {}))
    lines = ["iteration,error,pressure_bar,temperature_K,production_steps,noise_ratio," +
             ",".join([f"error_{k}" for k in result.history[0]["errors"]] +
                      [f"overlap_{k.replace(' ', '_')}" for k in overlaps])]
    for h in result.history:
        # absent from checkpoints written before they were recorded (None: unknown)
        temp, steps, ratio = h.get("temperature_K"), h.get("production_steps"), h.get("noise_ratio")
        lines.append(f"{h['iteration']},{h['error']:.6g},{h['pressure_bar']:.6g},"
                     f"{'' if temp is None else f'{temp:.6g}'},{'' if steps is None else steps},"
                     f"{'' if ratio is None else f'{ratio:.4g}'}," +
                     ",".join([f"{v:.6g}" for v in h["errors"].values()] +
                              [f"{h['bonded_overlap'][k]:.4f}" for k in overlaps]))
    atomic_write_text(out / "convergence.csv", "\n".join(lines) + "\n")
    plot_convergence(result, out / "convergence.png")


def plot_convergence(result: IBIResult, path) -> None:
    """Error vs iteration, final g(r) vs targets, and potentials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    its = [h["iteration"] for h in result.history]
    axes[0].semilogy(its, [h["error"] for h in result.history], "k-o", label="overall")
    floors = [max(h["noise_floor"].values()) if h.get("noise_floor") else np.nan for h in result.history]
    if not np.all(np.isnan(floors)):
        axes[0].semilogy(its, floors, "k:", label="noise floor (largest)")
    axes[0].axvline(result.best_iteration, color="0.7", lw=0.8)
    for key in result.history[0]["errors"]:
        axes[0].semilogy(its, [h["errors"][key] for h in result.history], "--", label=key)
    axes[0].set(xlabel="iteration", ylabel="RDF RMS error", title=f"convergence (stop: {result.stop_reason})")
    axes[0].legend(fontsize=7)
    for p, g in result.rdfs.items():
        line, = axes[1].plot(result.r, g, label=f"{'-'.join(p)} IBI")
        axes[1].plot(result.r, result.targets[p], ":", color=line.get_color(), label=f"{'-'.join(p)} target")
        axes[2].plot(result.r, result.potentials[p], color=line.get_color(), label="-".join(p))
    axes[1].set(xlabel="r / nm", ylabel="g(r)", title=f"best iteration {result.best_iteration}")
    axes[1].legend(fontsize=7)
    umax = max(float(np.percentile(u, 90)) for u in result.potentials.values())
    axes[2].set(xlabel="r / nm", ylabel="U / kJ mol$^{-1}$", ylim=(None, max(umax, 1.0) * 1.5 + 1), title="potentials")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
