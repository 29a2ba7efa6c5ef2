"""Does a melt started from unperturbed chain conformations skip the chains' relaxation? (issue "Polymer melts").

Stop 40's AA melt of 48 n-C32 chains (``pe_cpu_ibi.yaml``'s C32 target) was packed as rigid copies of one conformer;
over its 600 ps production <Ree^2> fell from 4.79 to 4.12 nm^2 (a drift over 2 standard errors) and its end-to-end
autocorrelation was still 0.73 at 300 ps.  ``start_conformations: unperturbed`` gives every chain its own
conformation from the chain's unperturbed ensemble (vacuum dynamics, nonbonded pairs only up to 6 bonds apart),
which by Flory's theorem is the melt's.  Two checks:

1. **C16, against its relaxed melt.** 48 unperturbed C16 conformations at 400 K (AM1-BCC charges), mapped to the
   workflow's beads (a bead per CH2-CH2, ends merged), against the relaxed C16 AA melt of
   ``bench_polymer_pe_cpu_ibi_c32.json`` (tau_ee 90 ps, stationary): <Ree^2> and <Rg^2> of the beads.
2. **C32, the same melt as stop 40's,** the same settings (48 chains, Sage 2.2.0, AM1-BCC computed once and given
   explicitly, 3 Da hydrogens at 4 fs, 400 K, 200 ps NPT at 1 bar), started from unperturbed conformations, with a
   ``--production-ps`` production (default 1 ns): <Ree^2> from the packed start through the production in windows,
   the drift between halves, the end-to-end autocorrelation, against stop 40's run and its IBI transfer.

3. **The C32 melt continued elsewhere** (``--extension``, default ``WORKDIR/cg_c32_extended.h5`` when it exists:
   the production continued on a GPU by ``extend_melt_gpu.py``): the chain record over the whole run, <Ree^2> in
   1 ns windows, the end-to-end and Rouse-mode relaxation times.
4. **Against it, the C16 IBI model transferred to C32** (``--polymer-output``: a ``cgml polymer`` output whose
   ``C32_gpu`` target has the extended melt as its ``aa_dataset``, ``examples/polymer/pe_cpu_ibi_gpu_c32.yaml``):
   the transfer's record and comparison rows, and the CG over AA speed for C32, per simulated ns and per chain
   relaxation (both arms timed round-robin in one process on the CPU).

Writes ``benchmarks/results/study_melt_start.json`` and ``study_melt_start.png``.

Usage: python benchmarks/study_melt_start.py [--workdir runs/melt_start] [--production-ps 1000] [--threads 2]
       [--extension runs/melt_start/cg_c32_extended.h5] [--polymer-output runs/polymer_pe_cpu_ibi]
(about 1.7 h on two cores, most of it the C32 melt; the C32 run resumes from its checkpoint)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, interleaved, load_average, write_result  # noqa: E402

from openmm_cgml._io import atomic_write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = RESULTS / "bench_polymer_pe_cpu_ibi_c32.json"
MAPPING = {"repeat_smarts": "[CH2][CH2]", "units_per_bead": 1, "end_groups": "merge"}
TEMPERATURE = 400.0


def _estimate(x: np.ndarray) -> list[float]:
    x = np.asarray(x, dtype=float)
    return [float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))]


def _charged(smiles: str):
    from openff.toolkit import Molecule

    from openmm_cgml.reference.liquid import assign_charges

    mol = Molecule.from_smiles(smiles)
    assign_charges(mol, "am1bcc")
    return mol


def _mapping(smiles: str, count: int):
    """The polymer workflow's repeat-unit mapping (:data:`MAPPING`) of ``count`` chains of ``smiles``."""
    from openmm_cgml.workflows.polymer import PolymerConfig, _map_melt

    return _map_melt(PolymerConfig(smiles=smiles, count=count, **MAPPING), smiles, count)[1]


def _bead_dimensions(mapping, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-chain Ree^2 and Rg^2 (nm^2) of whole molecules' atom positions ``(count, n_atoms, 3)``, mapped (beads
    in chain order, equal weights, as the workflow's chain records)."""
    from openmm_cgml.analysis.chains import chain_dimensions

    count = xyz.shape[0]
    beads = mapping.map_positions(xyz.reshape(-1, 3))
    dims = chain_dimensions(beads[None], np.arange(len(beads)).reshape(count, -1))
    return dims.ree[0] ** 2, dims.rg[0] ** 2


def validate_c16(reference: dict, seed: int) -> dict:
    """Unperturbed C16 conformations against the relaxed C16 melt's bead dimensions."""
    from openmm_cgml.reference import load_forcefield, unperturbed_conformations

    smiles = "C" * 16
    t0 = time.perf_counter()
    xyz, info = unperturbed_conformations(_charged(smiles), load_forcefield("openff-2.2.0"), 48,
                                          temperature=TEMPERATURE, seed=seed, progress=True)
    ree2, rg2 = _bead_dimensions(_mapping(smiles, 48), xyz)
    out = {"copies": 48, "sampling": info, "wall_s": time.perf_counter() - t0,
           "unperturbed": {"ree2_nm2": _estimate(ree2), "rg2_nm2": _estimate(rg2)},
           "melt": {"ree2_nm2": reference["ree2_nm2"], "rg2_nm2": reference["rg2_nm2"],
                    "tau_ee_ps": reference["end_to_end"]["tau_ps"]}}
    for key in ("ree2_nm2", "rg2_nm2"):
        (a, ea), (b, eb) = out["unperturbed"][key], out["melt"][key]
        out[f"{key[:-4]}_difference"] = {"relative": a / b - 1, "relative_err": float(np.hypot(ea / b, a * eb / b**2)),
                                         "within_2_se": bool(abs(a - b) <= 2 * np.hypot(ea, eb))}
    return out


def reference_config(production_ps: float, threads: int | None, charges: list[float]) -> dict:
    return {"charge_method": "am1bcc", "checkpoint_interval": "20 ps",
            "components": [{"count": 48, "name": "PE", "smiles": "C" * 32, "partial_charges": charges,
                            "charges_source": "AM1-BCC (AmberTools sqm through the OpenFF toolkit), computed once for "
                                              "this study"}],
            "density": "0.75 g/cm**3", "forcefield": "openff-2.2.0", "hydrogen_mass": "3 Da", "npt": "200 ps",
            "nvt": "20 ps", "packing_density": "0.25 g/cm**3", "platform": "CPU", "threads": threads,
            "pressure": "1 bar", "production": f"{production_ps:g} ps", "report_interval": "1 ps", "seed": 0,
            "temperature": f"{TEMPERATURE} K", "timestep": "4 fs", "start_conformations": "unperturbed"}


def run_c32(work: Path, production_ps: float, threads: int | None) -> dict:
    """The C32 melt from unperturbed conformations, mapped and analysed in windows."""
    import openmm.app

    from openmm_cgml.analysis.chains import chain_dimensions
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.reference import ReferenceConfig
    from openmm_cgml.topology import CGTopology
    from openmm_cgml.workflows import MapConfig, run_map, run_reference
    from openmm_cgml.workflows.polymer import chain_record
    from openmm_cgml.workflows.polymer_transfer import chain_order

    cfg_path = work / "c32_unperturbed.yaml"
    if cfg_path.exists():  # the charges computed once (AM1-BCC of C32: minutes), reused on a resume
        charges = yaml.safe_load(cfg_path.read_text())["components"][0]["partial_charges"]
    else:
        q = _charged("C" * 32).partial_charges.m_as("elementary_charge")
        charges = [round(float(x), 6) for x in q]
    cfg = reference_config(production_ps, threads, charges)
    atomic_write_text(cfg_path, yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.perf_counter()
    ref = run_reference(ReferenceConfig.from_data(cfg), work / "aa_c32_unperturbed.h5", progress=True)
    wall = time.perf_counter() - t0
    cg = work / "cg_c32_unperturbed.h5"
    if not cg.exists():
        run_map(MapConfig.from_data({"input": str(ref.dataset), "output": str(cg),
                                     "mapping_out": str(work / "mapping_c32.json"),
                                     "mapping": {"method": "repeat_unit", "smiles": ["C" * 32], "options": MAPPING}}))
    mapped = open_dataset(cg)
    record = chain_record(mapped)
    chains = chain_order(CGTopology.from_dataset(mapped))
    pos = np.asarray(mapped.positions[:], dtype=float)
    box = np.asarray(mapped.box[:], dtype=float)
    times = np.asarray(mapped.time[:], dtype=float)
    ree2 = chain_dimensions(pos, chains, box).ree ** 2  # frames x chains
    edges = np.arange(0.0, times[-1] - times[0] + 1e-6, 100.0)
    windows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (times - times[0] >= lo) & (times - times[0] < hi)
        windows.append({"from_ps": float(lo), "to_ps": float(hi), "ree2_nm2": _estimate(ree2[sel].mean(0))})
    # the packed start (before compression and equilibration): its conformations are the sampled ones
    pdb = openmm.app.PDBFile(str(ref.pdb))
    xyz = np.asarray(pdb.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)).reshape(48, -1, 3)
    start_ree2, start_rg2 = _bead_dimensions(_mapping("C" * 32, 48), xyz)
    aa = open_dataset(ref.dataset)
    return {"chain_record": record, "windows": windows, "wall_s_this_call": wall,
            "packed_start": {"ree2_nm2": _estimate(start_ree2), "rg2_nm2": _estimate(start_rg2)},
            "sampling": aa.metadata.get("unperturbed_sampling"), "npt_density_g_cm3": ref.npt_density,
            "production_ps": production_ps, "frames": int(aa.n_frames)}


def analyse_extension(path: Path) -> dict:
    """The C32 melt's production continued on a GPU (``extend_melt_gpu.py``): its chain record over the whole run,
    <Ree^2> in 1 ns windows, the end-to-end and Rouse-mode autocorrelations (the curves, thinned, for the plot)."""
    from openmm_cgml.analysis.chains import chain_dimensions, end_to_end_autocorrelation, rouse_modes
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.topology import CGTopology
    from openmm_cgml.workflows.polymer import chain_record
    from openmm_cgml.workflows.polymer_transfer import chain_order

    ds = open_dataset(path)
    chains = chain_order(CGTopology.from_dataset(ds))
    pos = np.asarray(ds.positions, dtype=float)
    box = np.asarray(ds.box, dtype=float)
    times = np.asarray(ds.time, dtype=float)
    ree2 = chain_dimensions(pos, chains, box).ree ** 2
    t = times - times[0]
    windows = [{"from_ps": float(lo), "to_ps": float(lo + 1000.0),
                "ree2_nm2": _estimate(ree2[(t >= lo) & (t < lo + 1000.0)].mean(0))}
               for lo in np.arange(0.0, t[-1] - 999.0, 1000.0)]
    e2e = end_to_end_autocorrelation(pos, chains, times, box=box, fit=True)
    rouse = rouse_modes(pos, chains, times, box=box, modes=[1, 2, 3, 4, 6])
    keep = np.searchsorted(e2e.lag_times, np.arange(0.0, min(e2e.lag_times[-1], 4000.0), 20.0))  # for the plot

    def curve(c):
        return np.round(c[keep], 4).tolist()

    return {"dataset": str(path), "chain_record": chain_record(ds), "windows_1ns": windows,
            "segments": ds.metadata.get("gpu_extension"),
            "end_to_end": {"tau_integral_ps": e2e.tau_integral, "tau_kww_ps": e2e.tau_kww, "beta_kww": e2e.beta_kww,
                           "tau_kww_mean_ps": e2e.tau_kww_mean, "decayed": bool(e2e.decayed),
                           "decay_time_ps": e2e.decay_time, "message": e2e.message,
                           "runs_per_tau": float(t[-1] / e2e.tau_integral),
                           "curve": {"lag_ps": np.round(e2e.lag_times[keep], 1).tolist(), "c": curve(e2e.correlation),
                                     "err": curve(e2e.correlation_err)}},
            "rouse": {"p": rouse.p.tolist(), "amplitude2_nm2": rouse.amplitude2.tolist(),
                      "amplitude2_err_nm2": rouse.amplitude2_err.tolist(), "tau_integral_ps": rouse.tau_integral.tolist(),
                      "tau_kww_ps": rouse.tau_kww.tolist(), "beta_kww": rouse.beta_kww.tolist(),
                      "decayed": rouse.decayed.tolist(),
                      "curves": [curve(c.correlation) for c in rouse.correlations]}}


def transfer_against(polymer_output: Path) -> dict:
    """The C16 IBI model transferred to C32 by ``cgml polymer`` with the extended melt as the target's
    ``aa_dataset``: its record (the AA and CG chain records, the comparison rows)."""
    summary = json.loads((polymer_output / "summary.json").read_text())
    record = summary.get("transfer", {}).get("C32_gpu")
    if record is None or "aa" not in record:
        raise SystemExit(f"{polymer_output}: no C32_gpu transfer target with an AA melt to compare with (run cgml "
                         "polymer examples/polymer/pe_cpu_ibi_gpu_c32.yaml)")
    out = {"source": str(polymer_output), "record": record, "c16": {"aa": summary["chains"]["AA"],
                                                                       "ibi": summary["chains"]["IBI"]}}
    c64 = summary["transfer"].get("C64")
    if c64 is not None and "ibi" in c64.get("models", {}):  # the 4x transfer (CG only), beside it
        out["c64"] = {k: c64[k] for k in ("count", "beads_per_chain", "box_nm", "density_g_cm3", "density_from",
                                          "cg_start")} | {"ibi": c64["models"]["ibi"]}
    return out


def c32_speed(work: Path, polymer_output: Path, record: dict, rounds: int = 5, aa_steps: int = 200,
              cg_steps: int = 2000) -> dict:
    """CG over AA speed for the C32 melt, per simulated ns and per chain relaxation: the AA melt (its System, last
    frame and 4 fs step, on the CPU) and the transferred IBI model (its transfer run's System, last frame and step)
    timed round-robin in one process (``bench_polymer``'s Langevin blocks; medians, spread and load recorded)."""
    from bench_polymer import _stepper

    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.forces.xml import load_system

    folder = polymer_output / "transfer" / "C32_gpu"
    aa = open_dataset(work / "aa_c32_unperturbed.h5")
    cg = open_dataset(folder / "ibi_run.h5")
    dts = {"AA": float(aa.metadata["timestep_ps"]), "IBI": float(cg.metadata["timestep_ps"])}
    arms = {"AA": (_stepper(load_system(work / "aa_c32_unperturbed.system.xml"), aa.positions[-1], aa.box[-1],
                            dts["AA"], TEMPERATURE, "CPU", aa_steps), aa_steps * dts["AA"]),
            "IBI": (_stepper(load_system(folder / "ibi_system.xml"), cg.positions[-1], cg.box[-1], dts["IBI"],
                             TEMPERATURE, "CPU", cg_steps), cg_steps * dts["IBI"])}
    load_before = load_average()
    timed = interleaved(arms, rounds, spread=True)
    per_ns = timed["AA"]["median"] / timed["IBI"]["median"]
    tau = {"AA": record["aa"]["end_to_end"], "IBI": record["models"]["ibi"]["end_to_end"]}
    both = tau["AA"]["decayed"] and tau["IBI"]["decayed"]
    return {"seconds_per_ns": {k: v["median"] * 1000 for k, v in timed.items()},
            "seconds_per_ns_spread": {k: [v["min"] * 1000, v["max"] * 1000] for k, v in timed.items()},
            "timestep_fs": {k: v * 1000 for k, v in dts.items()}, "load_before": load_before,
            "load_after": load_average(), "rounds": rounds, "steps": {"AA": aa_steps, "IBI": cg_steps},
            "speedup_per_ns": per_ns, "tau_ee_ps": {k: v["tau_ps"] for k, v in tau.items()},
            "speedup_relaxation": per_ns * tau["AA"]["tau_ps"] / tau["IBI"]["tau_ps"] if both else None,
            "relaxation_note": None if both else "an end-to-end autocorrelation has not decayed",
            "platform": "CPU", "integrator": "LangevinMiddle, 1 /ps, at each run's timestep"}


def _plot(path: Path, c32: dict, previous: dict, extended: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if extended else 1, figsize=(16.0 if extended else 6.4, 4.0), squeeze=False)
    ax = axes[0, 0]
    mid = [0.5 * (w["from_ps"] + w["to_ps"]) for w in c32["windows"]]
    val = [w["ree2_nm2"][0] for w in c32["windows"]]
    err = [w["ree2_nm2"][1] for w in c32["windows"]]
    ax.errorbar(mid, val, yerr=err, fmt="o-", label="AA, unperturbed start (this study)")
    s = c32["packed_start"]["ree2_nm2"]
    ax.errorbar([-20], [s[0]], yerr=[s[1]], fmt="s", color="C0", mfc="white", label="its packed start (before NPT)")
    for rec, label, color in ((previous["aa"], "AA, one-conformer start (stop 40)", "C3"),
                              (previous["models"]["ibi"], "IBI transfer, grown start (stop 40)", "C2")):
        half = rec["duration_ps"] / 2
        for (v, e), lo in ((rec["ree2_drift"]["first_half_nm2"], 0.0), (rec["ree2_drift"]["second_half_nm2"], half)):
            ax.plot([lo, lo + half], [v, v], color=color, lw=2, label=label if lo == 0 else None)
            ax.fill_between([lo, lo + half], v - e, v + e, color=color, alpha=0.2)
    ax.set_xlabel("production time (ps)")
    ax.set_ylabel("<Ree^2> of the beads (nm^2)")
    ax.set_title("48 x n-C32 at 400 K: <Ree^2> in 100 ps windows (s.e. over chains)")
    ax.legend(fontsize=8)
    if extended:
        ax = axes[0, 1]
        w = extended["windows_1ns"]
        ax.errorbar([0.5 * (x["from_ps"] + x["to_ps"]) / 1000 for x in w], [x["ree2_nm2"][0] for x in w],
                    yerr=[x["ree2_nm2"][1] for x in w], fmt="o-", label="AA, 1 ns windows")
        v, e = extended["chain_record"]["ree2_nm2"]
        ax.axhspan(v - e, v + e, color="C0", alpha=0.2, label=f"AA, whole run: {v:.2f} ± {e:.2f}")
        ax.axvline(1.0, color="grey", ls=":", lw=1)
        ax.text(1.05, ax.get_ylim()[0], " CPU | GPU", fontsize=8, va="bottom")
        ax.set_xlabel("production time (ns)")
        ax.set_ylabel("<Ree^2> of the beads (nm^2)")
        ax.set_title("the same melt continued on a GPU")
        ax.legend(fontsize=8)
        ax = axes[0, 2]
        curve = extended["end_to_end"]["curve"]
        lag = np.asarray(curve["lag_ps"]) / 1000
        ax.plot(lag, curve["c"], label=f"end-to-end (tau {extended['end_to_end']['tau_integral_ps']:.0f} ps)")
        for p, c, tau in zip(extended["rouse"]["p"], extended["rouse"]["curves"],
                             extended["rouse"]["tau_integral_ps"]):
            ax.plot(lag, c, lw=1, label=f"Rouse p={p} (tau {tau:.0f} ps)")
        ax.axhline(np.exp(-1), color="grey", ls=":", lw=1)
        ax.set_xlim(0, lag[-1])
        ax.set_xlabel("lag (ns)")
        ax.set_ylabel("autocorrelation")
        ax.set_title("C32 AA melt: chain relaxation")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "melt_start")
    parser.add_argument("--production-ps", type=float, default=1000.0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the C32 run (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", choices=("all", "c16"), default="all", help="c16: only the C16 check")
    parser.add_argument("--extension", type=Path, default=None,
                        help="the C32 run continued elsewhere (extend_melt_gpu.py ingest; default: "
                             "WORKDIR/cg_c32_extended.h5 when it exists)")
    parser.add_argument("--polymer-output", type=Path, default=None,
                        help="a cgml polymer output whose C32 target has the extended run as aa_dataset "
                             "(examples/polymer/pe_cpu_ibi_gpu_c32.yaml): its transfer comparison is added")
    args = parser.parse_args()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    previous = json.loads(PREVIOUS.read_text())["figures"]["study"]
    kept = work / "c16_validation.json"  # the C16 check (minutes) is kept, so that a resumed study skips it
    if kept.exists():
        c16 = json.loads(kept.read_text())
    else:
        c16 = validate_c16(previous["chains"]["AA"], args.seed)
        atomic_write_text(kept, json.dumps(c16, indent=2, default=float))
    if args.stage == "c16":
        return 0
    c32 = run_c32(work, args.production_ps, args.threads)
    old = previous["transfer"]["C32"]
    figures = {"c16_validation": c16, "c32": c32,
               "c32_previous": {"aa": old["aa"], "ibi": old["models"]["ibi"], "source": PREVIOUS.name}}
    extension = args.extension or (work / "cg_c32_extended.h5")
    extended = None
    if extension.exists():
        extended = figures["c32_extended"] = analyse_extension(extension)
    if args.polymer_output is not None:
        figures["c32_transfer"] = transfer_against(args.polymer_output)
        figures["c32_speed"] = c32_speed(work, args.polymer_output, figures["c32_transfer"]["record"])
    _plot(RESULTS / "study_melt_start.png", c32, {"aa": old["aa"], "models": old["models"]}, extended)
    write_result("study_melt_start", figures,
                 {"workdir": str(work), "production_ps": args.production_ps, "threads": args.threads,
                  "seed": args.seed, "temperature_K": TEMPERATURE, "mapping": MAPPING})
    return 0


if __name__ == "__main__":
    sys.exit(main())
