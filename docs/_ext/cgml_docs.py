"""Sphinx directives that read the repository, so the pages they feed cannot drift from it.

``cgml-benchmark NAME`` (option ``:table:``)
    A table of ``benchmarks/results/NAME.json`` (one renderer per benchmark and table below).
``cgml-provenance NAME`` (option ``:date:``)
    When, where and with which versions ``NAME.json`` was measured, from the file's own ``date``,
    ``machine`` and ``versions`` / ``package_versions`` fields; ``:date:`` is shown, marked as such, only
    when the file records no date.
``cgml-layers``
    The package's layers, read from ``tests/test_architecture.py`` (``LAYERS`` and its docstring).
``cgml-entry-points``
    The built-in plug-ins, read from ``pyproject.toml``'s ``[project.entry-points."openmm_cgml.*"]``.

It also warns about Python references in the pages that do not resolve (:func:`check_page_reference`), and
keeps napoleon from reading the first line of an attribute docstring as ``type: description``.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
#: Versions shown in a provenance line (the files hold more).
KEY_VERSIONS = ("python", "openmm", "torch", "acellera-openmmtorch-cpu", "numpy", "openmm_cgml")


# ----------------------------------------------------------------------------- small helpers
def _num(x, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (thousands separated), or an em dash for None."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 10 ** (digits - 1):  # no exponent for large numbers: 3,233 rather than 3.23e+03
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _table(header: list[str], rows: list[list[str]], caption: str | None = None) -> nodes.table:
    table = nodes.table(classes=["cgml-results"])
    if caption:
        table += nodes.title(text=caption)
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    group += head
    body = nodes.tbody()
    group += body
    for target, cells in ((head, [header]), (body, rows)):
        for cells_row in cells:
            row = nodes.row()
            for cell in cells_row:
                entry = nodes.entry()
                entry += nodes.paragraph(text=str(cell))
                row += entry
            target += row
    return table


def _load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read benchmark results {path}: {exc}") from exc


# ----------------------------------------------------------------------------- one renderer per table
def _aa_reference(d, table):
    f, s = d["figures"], d["settings"]
    samples = f.get("aa_steps_per_s_samples", [])
    comp = ", ".join(f"{c['count']} x {c['smiles']}" for c in s["components"])
    rows = [
        ["system", f"{comp} ({_num(f['n_atoms'])} atoms), OpenFF Sage 2.2.0 + AM1-BCC, {s['platform']} platform"],
        ["protocol", f"NVT {s['nvt']}, NPT {s['npt']} at {s['temperature']}, {s['pressure']}; "
                     f"timestep {s['timestep']}"],
        ["density (second half of NPT)", f"{_num(f['density_g_cm3_mean_second_half_npt'])} +/- "
                                         f"{_num(f['density_g_cm3_std'], 2)} g/cm^3"],
        ["experiment", f"{_num(f['experimental_density_g_cm3'])} g/cm^3 "
                       f"(relative error {100 * f['density_relative_error']:+.1f} %)"],
        ["speed", f"{_num(f['aa_ns_per_day_median'])} ns/day (median of {s['repeats']} x {s['timing_steps']} steps; "
                  f"{_num(min(samples))}-{_num(max(samples))} steps/s)" if samples else
         f"{_num(f['aa_ns_per_day_median'])} ns/day"],
    ]
    return [_table(["quantity", "value"], rows)]


def _cg_speed(d, table):
    if table == "mapping":
        rows = []
        for key, label in (("1_bead", "1 bead per molecule"), ("3_bead", "3 beads per molecule")):
            m = d["cg"][key]["mapping_speed_1e5_atoms"]
            rows.append([label, _num(m["n_atoms"]), _num(m["n_beads"]), _num(m["median_positions_ms"]),
                         _num(m["median_forces_ms"])])
        return [_table(["mapping", "atoms", "beads", "positions (ms per frame)", "forces (ms per frame)"], rows)]
    aa = d["aa"]

    def seconds(v):
        lo, hi = v.get("s_per_ns_spread", (None, None))
        return _num(v["s_per_ns"]) + (f" ({_num(lo, 3)}-{_num(hi, 3)})" if lo is not None else "")

    rows = [["all-atom", "PME 0.9 nm, H-bond constraints", _num(aa["timestep_fs"]), _num(aa["median_steps_per_s"]),
             seconds(aa), "1", "—"]]
    for key, label in (("1_bead", "1 bead"), ("3_bead", "3 beads")):
        entry = d["cg"][key]
        layout = entry.get("table_layout")
        for variant, what in (("tabulated", f"tables ({layout} layout)" if layout else "tables (IBI form)"),
                              ("analytic", "inverse-power fit")):
            v = entry.get(variant, {})
            if "s_per_ns" not in v:
                rows.append([label, what, "none stable", "—", "—", "—", "—"])
                continue
            per_round = v.get("speedup_per_round")
            speedup = f"{v['speedup_over_aa']:.0f}x" + (f" ({per_round[0]:.0f}-{per_round[1]:.0f}x)" if per_round else "")
            rows.append([f"{label} ({_num(entry['n_beads'])} beads)", what, _num(v["timestep_fs"]),
                         _num(v["median_steps_per_s"]), seconds(v), speedup, _num(v["stable"])])
    return [_table(["model", "pair force", "timestep (fs)", "steps/s (median)", "wall s per simulated ns (spread)",
                    "speed-up over AA (per round)", "timed run within 15 % of T"], rows)]


def _ibi(d, table):
    i = d["ibi"]
    rows = [
        ["system", f"{d['n_molecules']} molecules of {d['molecule']}, {d['mapping']}, {_num(d['temperature_K'])} K"],
        ["AA reference", f"{_num(d['aa_reference']['production_ps'])} ps production, "
                         f"{_num(d['aa_reference']['frames'])} frames, "
                         f"{_num(d['aa_reference']['wall_s_all_stages'])} s wall (all stages)"],
        ["IBI", f"{'converged' if i['converged'] else 'not converged'} after {i['iterations']} iterations "
                f"(best {i['best_iteration']}); tolerance {_num(i['tolerance'])} (the targets' own half-vs-half "
                "noise)"],
        ["RDF error per iteration", ", ".join(_num(e) for e in i["errors"])],
        ["pressure per iteration (bar)", ", ".join(_num(p) for p in i["pressures_bar"])],
        ["IBI settings", f"cutoff {_num(i['cutoff_nm'])} nm, timestep {_num(i['cg_timestep_fs'])} fs, "
                         f"{_num(i['steps_per_iteration'])} steps per iteration"],
        ["IBI wall time", f"{_num(i['wall_s_including_mapping_and_targets'])} s (mapping and targets included)"],
        ["cost relative to the AA run", f"{_num(d['cost_ratio_ibi_over_aa_all_stages'], 2)} (all AA stages), "
                                        f"{_num(d['cost_ratio_ibi_over_aa_production'], 2)} (AA production only)"],
    ]
    return [_table(["quantity", "value"], rows)]


def _analysis(d, table):
    a, r = d["analysis"], d["reporter"]
    rows = [
        ["RDF", f"{_num(a['n_beads'])} beads, {a['rdf_type_pairs']} type pairs, box {_num(a['box_nm'])} nm",
         f"{_num(a['rdf_seconds_per_frame'], 2)} s per frame ({a['rdf_frames_timed']} frames timed)"],
        ["MSD (all origins, unwrapping, COM removal, fit)", f"{_num(a['n_beads'])} beads x {_num(a['n_frames'])} "
         "frames", f"{_num(a['msd_seconds_all_origins_unwrap_com_fit'], 2)} s; D = {_num(a['msd_D_nm2_per_ps'])} "
         f"+/- {_num(a['msd_D_err'], 2)} nm^2/ps (true {_num(a['msd_D_true'])})"],
        ["TimeCorrelationReporter overhead", f"{_num(r['n_beads'])}-bead CG run, {r['platform']}, {r['threads']} "
         f"threads, report interval {r['report_interval']}",
         f"{100 * r['overhead_fraction']:+.1f} % per step (median of {r['repeats']}; goal <= "
         f"{100 * r['goal_overhead_fraction']:.0f} %)"],
    ]
    return [_table(["what", "size", "time"], rows)]


_BACKEND_LABELS = {"torch": "TorchForce", "python": "PythonForce", "compiled": "compiled C++ network"}
_BRIDGE_ROWS = [(f"{b}_{f}_priors_{p}", f"{_BACKEND_LABELS[b]}, {'exact filters' if f == 'exact' else 'filter tables'}"
                 f", priors in {p}")
                for b in ("torch", "python", "compiled") for f in ("exact", "tabulated") for p in ("openmm", "network")
                if b != "compiled" or p == "openmm"]


def _neural(d, table):
    prev = d.get("previous_run", {})
    if table == "neighbors":
        rows = [[_num(int(n)), _num(v["pairs"]), v["method"], _num(v["brute_force_ms"]), _num(v["ours_ms"]),
                 f"{v['speedup']:.1f}x"] for n, v in sorted(d["neighbors"].items(), key=lambda kv: int(kv[0]))]
        return [_table(["beads", "pairs within 1.0 nm", "our method", "brute force (ms)", "ours (ms)", "speed-up"],
                       rows)]
    if table == "bridge":
        runs = [("latest", d["bridge"])] + ([("previous run", prev["bridge"])] if "bridge" in prev else [])
        header = ["force path"] + [f"{label}: step / bare model (ms), overhead" for label, _ in runs]
        rows = []
        for key, label in _BRIDGE_ROWS:
            cells = [label]
            for _, b in runs:
                v = b.get(key)
                if v is None:
                    cells.append("—")
                elif v.get("overhead") is None:  # the compiled force: the step is the whole evaluation
                    cells.append(f"{_num(v['step_ms'])} / —")
                else:
                    cells.append(f"{_num(v['step_ms'])} / {_num(v['bare_model_ms'])}, {v['overhead']:.2f}x")
            rows.append(cells)
        return [_table(header, rows)]
    if table == "training":
        runs = [("latest", d["training"])] + ([("previous run", prev["training"])] if "training" in prev else [])
        header = ["beads per frame", "pairs per frame"] + [f"{label}: batched / per-frame loop (frames/s), speed-up"
                                                           for label, _ in runs]
        rows = []
        for size in sorted(d["training"]["sizes"], key=int):
            s = d["training"]["sizes"][size]
            cells = [size, _num(s["pairs_per_frame"])]
            for _, t in runs:
                v = t["sizes"].get(size)
                cells.append("—" if v is None else f"{_num(v['batched_frames_per_s'])} / "
                                                   f"{_num(v['naive_frames_per_s'])}, {v['speedup']:.1f}x")
            rows.append(cells)
        return [_table(header, rows)]
    if table == "timestep_scan":
        t = d["timestep_scan"]
        rows = [[k, _num(v["stable"]), _num(v["mean_temperature_K"]), _num(v["step_ms_median"])]
                for k, v in t["scan"].items()]
        verlet = t.get("verlet", {})
        out = [_table(["timestep", "stable", "mean T (K)", "median step (ms)"], rows)]
        if verlet:
            out.append(nodes.paragraph(text=(
                f"Target {_num(t['temperature_K'])} K, {_num(t['steps_per_trial'])} steps per trial; largest "
                f"stable timestep {_num(t['largest_stable_fs'])} fs.  Verlet list: skin {_num(verlet['skin_nm'])} nm, "
                f"{verlet['rebuilds_per_200_steps']} rebuilds per 200 steps at {_num(verlet['search_ms'])} ms each "
                f"({_num(verlet['search_ms_per_step'])} ms per step), {_num(verlet['pairs_in_list'])} pairs in the "
                "list.")))
        return out
    if table == "aa_vs_cg":
        runs = [("latest", d["aa_vs_cg"])] + ([("previous run", prev["aa_vs_cg"])] if "aa_vs_cg" in prev else [])
        out = []
        for label, a in runs:
            rows = []
            for variant, name in (("trained_torchforce", "TorchForce, exact filters"),
                                  ("trained_torchforce_tabulated", "TorchForce, filter tables"),
                                  ("trained_pythonforce_tabulated", "PythonForce, filter tables"),
                                  ("trained_compiled_tabulated", "compiled C++ network, filter tables")):
                for fs in (5, 10, 25):
                    key = f"{variant}_{fs}fs"
                    if f"cg_ns_per_day_{key}" not in a:
                        continue
                    rows.append([name, f"{fs} fs", _num(a["cg_step_ms"][variant]), _num(a[f"cg_ns_per_day_{key}"]),
                                 f"{a[f'speedup_per_simulated_ns_{key}']:.1f}x",
                                 f"{a[f'speedup_with_dynamics_{key}']:.0f}x"])
            caption = (f"{label}: AA {_num(a['aa_atoms'])} atoms at {_num(a['aa_timestep_fs'])} fs, "
                       f"{_num(a['aa_step_ms'])} ms per step = {_num(a['aa_ns_per_day'])} ns/day; CG "
                       f"{_num(a['cg_beads'])} beads")
            if "step_ms_spread" in a:  # runs since 2026-12-04 record their rounds, spread and machine load
                spread = a["step_ms_spread"]
                caption += (f"; medians of {a['rounds']} round-robin rounds, step range AA "
                            f"{_num(spread['aa'][0])}-{_num(spread['aa'][1])} ms, compiled CG "
                            f"{_num(spread['trained_compiled_tabulated'][0])}-"
                            f"{_num(spread['trained_compiled_tabulated'][1])} ms; load average (1, 5, 15 min) "
                            f"{a['load_average'][0]} before, {a['load_average'][1]} after")
            out.append(_table(["CG force path", "CG timestep", "CG step (ms)", "CG ns/day",
                               "speed-up per simulated ns", f"with alpha = {_num(a['alpha_used'])}"], rows, caption))
        return out
    if table == "compiled_step":
        c = d["compiled_step"]
        labels = {"generic": "the network alone, portable build", "avx2": "the network alone, AVX2 + FMA build",
                  "full": "whole step: network, repulsion (compiled pair force), bond, angle",
                  "repulsion_as_custom_nonbonded_force": "whole step, the repulsion as OpenMM's CustomNonbondedForce",
                  "without_network": "whole step without the network",
                  "without_repulsion": "whole step without the repulsion",
                  "without_forces": "whole step without any force (the integrator)"}
        rows = [[labels[k], _num(v), f"{_num(c['network_evaluation_spread_ms'][k][0])}-"
                                     f"{_num(c['network_evaluation_spread_ms'][k][1])}"]
                for k, v in c["network_evaluation_ms"].items()]
        rows += [[labels[k], _num(v), f"{_num(c['step_spread_ms'][k][0])}-{_num(c['step_spread_ms'][k][1])}"]
                 for k, v in c["step_ms"].items()]
        caption = (f"{c['beads']} beads; {c['method']}; this CPU's build: {c['simd_here']}; load average "
                   f"{c['load_average'][0]} before, {c['load_average'][-1]} after")
        return [_table(["what", "ms (median)", "range over rounds (ms)"], rows, caption)]
    if table == "profile":
        p = d["profile_cg_force_eval"]
        ex, tab = p["exact_filters"], p["tabulated_filters"]
        ops = {o["op"]: o for o in ex["top_ops"]}
        ops_t = {o["op"]: o for o in tab["top_ops"]}
        names = list(ops) + [o for o in ops_t if o not in ops]
        rows = [[n, _num(ops[n]["self_cpu_ms_per_eval"]) if n in ops else "—",
                 _num(ops_t[n]["self_cpu_ms_per_eval"]) if n in ops_t else "—"] for n in names]
        rows.append(["total (all ops)", _num(ex["total_self_cpu_ms_per_eval"]),
                     _num(tab["total_self_cpu_ms_per_eval"])])
        return [_table(["torch op", "exact filters (ms per evaluation)", "filter tables (ms per evaluation)"], rows)]
    if table == "trained_model":
        t = d["trained_model"]
        rows = [["training data", f"{_num(t['frames'])} frames of the mapped AA run (3 beads per molecule)"],
                ["training", f"{t['epochs']} epochs, position noise {t['position_noise']}, "
                             f"{_num(t['train_seconds'])} s"],
                ["validation force MSE", f"{_num(t['validation']['mse'])} (kJ/mol/nm)^2 (relative RMSE "
                                         f"{_num(t['validation']['relative_rmse'], 2)})"],
                ["zero-force MSE", f"{_num(t['zero_force_mse'])} (kJ/mol/nm)^2"],
                ["priors", ", ".join(p["name"] for p in t["priors"])]]
        return [_table(["quantity", "value"], rows)]
    raise ValueError(f"unknown bench_neural table {table!r}")


def _pm(d: dict, scale: float = 1e3, digits: int = 3) -> str:
    """``D +/- err`` of a diffusion record, in 1e-3 nm^2/ps by default, marked when not converged."""
    text = f"{_num(d['D_nm2_per_ps'] * scale, digits)} +/- {_num(d['D_err_nm2_per_ps'] * scale, 2)}"
    return text if d.get("converged", True) else text + " (not converged)"


def _spread_text(s: dict, scale: float = 1.0) -> str:
    return (f"mean {_num(s['mean'] * scale)}, replica sd {_num(s['sd'] * scale, 2)} (s.e. of the mean "
            f"{_num(s['sem'] * scale, 2)}), median reported s.e. {_num(s['median_error'] * scale, 2)}; "
            f"chi^2 {_num(s['chi2'], 2)} for {s['dof']} dof (p = {_num(s['chi2_p_value'], 2)}); "
            f"{s['within_1_error']}/{s['n']} within 1 and {s['within_2_errors']}/{s['n']} within 2 errors of the "
            "others' mean")


def _study_dynamics(d, table):
    f = d["figures"]
    if table == "replicas":
        rows = [[str(r["seed"]), _num(r["box_nm"]), _num(r["density_g_cm3"]), _num(r["production_ps"]),
                 _pm(r["diffusion"]), r["diffusion"]["reason"].split(": ", 1)[-1]]
                for r in f["aa_replicas"]]
        return [_table(["seed", "box (nm)", "NPT density (g/cm^3)", "production (ps)",
                        "D_AA (1e-3 nm^2/ps, s.e.)", "MSD regime"], rows)]
    if table == "alpha":
        rows = [["D_AA, 64 molecules (1e-3 nm^2/ps)", _spread_text(f["D_AA_64"], 1e3)]]
        for beads in (3, 1):
            cg = f.get(f"cg_{beads}_bead")
            if not cg:
                continue
            rows += [
                [f"{beads}-bead IBI: iterations (stop reason)",
                 ", ".join(f"{i['iterations']} ({i['stop_reason']})" for i in cg["ibi"])],
                [f"{beads}-bead IBI: best RDF error; last / best",
                 ", ".join(f"{_num(i['best_error'], 2)}; {_num(i['final_over_best'], 3)}" for i in cg["ibi"])],
                [f"{beads}-bead: the kept model's RDF error on its 500 ps CG run; over the kept iteration's",
                 ", ".join(f"{_num(e, 2)}; {_num(r, 2)}" for e, r in zip(cg["production_rdf_error"],
                                                                       cg["production_rdf_over_kept"]))],
                [f"{beads}-bead CG timestep (fs) and NVE drift (kT/ns/dof)",
                 ", ".join(f"{_num(t)} ({_num(e, 2)})" for t, e in zip(cg["timesteps_fs"],
                                                                      cg["energy_drift_kT_per_ns_per_dof"]))],
                [f"{beads}-bead D_CG (1e-3 nm^2/ps)", _spread_text(cg["D_CG"], 1e3)],
                [f"{beads}-bead alpha per replica",
                 ", ".join(f"{_num(v)} +/- {_num(e, 2)}" for v, e in zip(cg["alpha"]["values"], cg["alpha"]["errors"]))],
                [f"{beads}-bead alpha", _spread_text(cg["alpha"])],
            ]
        return [_table(["quantity", "value"], rows)]
    if table == "thermostat":
        rows = []
        if "aa_thermostat" in f:
            r = f["aa_thermostat"]["bussi_over_nve"]
            rows.append(["AA (64 molecules)", "Bussi tau 1 ps (replica 1) / NVE (replica 1 continued)",
                         f"{_num(r['value'])} +/- {_num(r['err'], 2)}"])
        if "cg_thermostat" in f:
            c = f["cg_thermostat"]
            for label, key in (("Bussi tau 1 ps / NVE", "bussi_over_nve"), ("Langevin 1 /ps / NVE",
                                                                             "langevin_1ps_over_nve")):
                rows.append(["CG, 3-bead IBI (replica 1)", label,
                             f"{_num(c[key]['value'])} +/- {_num(c[key]['err'], 2)}"])
        return [_table(["model", "D ratio", "value (s.e.)"], rows)]
    if table == "density":
        den = f["aa_density"]
        c = den["controlled"]
        rows = [["replicas: NPT mean density (g/cm^3) and D_AA", ", ".join(
                    f"{_num(r, 4)}: {_pm(a['diffusion'])}" for r, a in zip(den["replica_densities_g_cm3"],
                                                                          f["aa_replicas"]))],
                ["replicas: d ln D / d ln rho (fit)", _num(den["replica_dlnD_dlnrho_fit"], 2)],
                [f"replica 1 compressed to {_num(c['density_g_cm3'], 4)} g/cm^3", _pm(c["diffusion"])],
                ["controlled d ln D / d ln rho (replica 1 at two densities)", _num(c["dlnD_dlnrho"], 2)]]
        return [_table(["quantity", "value (D in 1e-3 nm^2/ps, s.e.)"], rows)]
    if table == "finite_size":
        rows = []
        if "aa_viscosity" in f:
            v = f["aa_viscosity"]
            rows.append(["AA viscosity (periodic perturbation)",
                         f"{_num(v['viscosity_mPa_s'])} +/- {_num(v['viscosity_err_mPa_s'], 2)} mPa s "
                         f"(linear regime: {_num(v['linear'])})"])
            rows.append(["D_AA, 64 molecules, Yeh-Hummer corrected", _pm(f["D_AA_64_yeh_hummer"]) +
                         f" (correction {_num(f['D_AA_64_yeh_hummer']['yeh_hummer_correction_nm2_per_ps'] * 1e3)})"])
        if "aa_128" in f:
            a = f["aa_128"]
            rows.append([f"D_AA, 128 molecules ({_num(a['box_nm'])} nm box)", _pm(a["diffusion"])])
            if "yeh_hummer" in a:
                rows.append(["D_AA, 128 molecules, Yeh-Hummer corrected", _pm(a["yeh_hummer"])])
            e = f["aa_1_over_L"]
            rows.append(["D_AA extrapolated to 1/L = 0 (two boxes)",
                         f"{_num(e['D_inf_nm2_per_ps'] * 1e3)} +/- {_num(e['D_inf_err_nm2_per_ps'] * 1e3, 2)}; "
                         f"implied viscosity {_num(e['implied_viscosity_mPa_s'])} mPa s"])
        if "cg_finite_size" in f:
            c, v = f["cg_finite_size"], f["cg_viscosity"]
            rows += [
                ["CG viscosity (3-bead IBI, replica 1)", f"{_num(v['viscosity_mPa_s'])} +/- "
                 f"{_num(v['viscosity_err_mPa_s'], 2)} mPa s (linear regime: {_num(v['linear'])})"],
                [f"D_CG, 64 molecules ({_num(c['box_nm']['64'])} nm): measured / Yeh-Hummer",
                 f"{_pm(c['D_64'])} / {_pm(c['D_64_yeh_hummer'])}"],
                [f"D_CG, 512 molecules ({_num(c['box_nm']['512'])} nm): measured / Yeh-Hummer",
                 f"{_pm(c['D_512'])} / {_pm(c['D_512_yeh_hummer'])}"],
                ["D_CG extrapolated to 1/L = 0", f"{_num(c['one_over_L']['D_inf_nm2_per_ps'] * 1e3)} +/- "
                 f"{_num(c['one_over_L']['D_inf_err_nm2_per_ps'] * 1e3, 2)}; implied viscosity "
                 f"{_num(c['one_over_L']['implied_viscosity_mPa_s'])} mPa s"],
            ]
        if "alpha_replica1_3bead" in f:
            a = f["alpha_replica1_3bead"]
            rows.append(["alpha (replica 1's 3-bead model over the AA replica mean): measured / both corrected",
                         f"{_num(a['uncorrected']['value'])} +/- {_num(a['uncorrected']['err'], 2)} / "
                         f"{_num(a['yeh_hummer_both']['value'])} +/- {_num(a['yeh_hummer_both']['err'], 2)}"])
        return [_table(["quantity", "value (D in 1e-3 nm^2/ps, s.e.)"], rows)]
    if table == "errors":
        rows = []
        for name, rec in f["cg_single_run_errors"].items():
            label = name.replace("replica", "replica ").replace("_", ", ", 1).replace("_", "-")
            methods = ", ".join(f"{m} x {rec['error_methods'].count(m)}" for m in sorted(set(rec["error_methods"])))
            rows.append([f"{label} model, {rec['spread']['n']} runs at {_num(rec['timestep_fs'])} fs: D "
                         f"(1e-3 nm^2/ps); error used ({methods})", _spread_text(rec["spread"], 1e3)])
            rows.append([f"{label}: the same runs against their error over molecules alone",
                         _spread_text(rec["spread_particle_errors"], 1e3)])
        for t in f.get("cg_timestep_1_bead", []):
            r = t["chosen_over_5fs"]
            rows.append([f"replica {t['replica']}, 1 bead: D at {_num(t['timestep_fs'])} fs / D at 5 fs",
                         f"{_num(r['value'])} +/- {_num(r['err'], 2)} (z = {_num(t['z'], 2)}; "
                         f"{_pm(t['D_chosen'])} vs {_pm(t['D_5fs'])})"])
        return [_table(["quantity", "value"], rows)]
    raise ValueError(f"unknown study_dynamics table {table!r}")


def _sweep(d, table):
    f = d["figures"]
    if table == "cost":
        rows = []
        for key, label in (("fast", "fast family (united-atom 2-methylbutane)"), ("tmp", "2,3,4-trimethylpentane (OpenFF)")):
            r = f.get(key)
            if not r:
                continue
            steps = ", ".join(f"{k} {_num(v, 2)}" for k, v in (r.get("step_seconds_median") or {}).items())
            rows.append([label, f"{r['finished_total']} of {r['samples']} ({r['failed']} failed)",
                         _num(r["samples_per_hour_per_core"]), _num(r["core_seconds_per_sample_median"]),
                         _num(r.get("cpu_seconds_per_sample_median")) if r.get("cpu_seconds_per_sample_median")
                         else "not recorded", steps,
                         f"{_num(100 * (r['scheduler_overhead_fraction'] or 0), 2)} %",
                         _num(r.get("converged_fraction"), 2)])
        return [_table(["family", "samples finished", "samples per hour per core", "core s per sample (median)",
                        "worker CPU s per sample (median)", "median s per step", "scheduler overhead per task", "alpha converged (fraction)"], rows)]
    if table == "study":
        s = f["bag2022_study"]
        rows = [["samples", _num(s["samples"])], ["AA ns per sample (at most)", _num(s["aa_ns_per_sample_max"])],
                ["CPU core hours, measured cost per sample x samples", _num(s["cpu_core_hours_measured"])]]
        if "gpu_hours_total" in s:
            rows += [["GPU seconds per sample", _num(s["gpu_seconds_per_sample"])],
                     ["GPU hours in all", _num(s["gpu_hours_total"])],
                     [f"wall hours on {s['gpus']} GPUs", _num(s["wall_hours_on_gpus"])]]
        return [_table(["quantity", "value"], rows)]
    raise ValueError(f"unknown bench_sweep table {table!r}")


def _study_learn(d, table):
    f = d["figures"]
    if table == "alpha":
        rows = [[name, str(e["n"]), f"{_num(100 * e['median_relative_error'], 2)} %",
                 f"{_num(100 * e['max_relative_error'], 2)} %", f"{_num(100 * e['within_68'], 2)} %",
                 f"{_num(100 * e['within_95'], 2)} %"] for name, e in f["alpha"].items()]
        b = f["alpha_constant_baseline"]
        rows.append([f"constant alpha {_num(b['alpha'])} (test)", str(f["alpha"]["test"]["n"]),
                     f"{_num(100 * b['median_relative_error'], 2)} %", "", "", ""])
        h = f.get("alpha_constant_baseline_holdout")
        if h and "holdout" in f["alpha"]:
            rows.append([f"constant alpha {_num(h['alpha'])} (holdout)", str(f["alpha"]["holdout"]["n"]),
                         f"{_num(100 * h['median_relative_error'], 2)} %", "", "", ""])
        return [_table(["samples", "n", "median relative error", "largest", "measured inside 68 % interval",
                        "inside 95 %"], rows)]
    if table == "potentials":
        rows = []
        p = f.get("potential")
        if p:
            rows.append(["structure: principal components of the tables (spread kept)",
                         f"{p['pca_components']} ({_num(100 * p['pca_variance'], 5)} %)"])
            sets = [k for k in ("train", "validation", "test", "holdout") if k in p["table_rms_kT_median"]]
            rows.append([f"structure: median table RMS, {' / '.join(sets)} (kT, where U < 5 kT)",
                         " / ".join(_num(p["table_rms_kT_median"][k], 2) for k in sets)])
            for key, what in (("simulated", "test"), ("simulated_holdout", "held-out")):
                s = p.get(key)
                if s and s["n"]:
                    rows.append([f"structure: RDF error of the predicted potential over the sample's own IBI one "
                                 f"({s['n']} {what} samples run)", f"median {_num(s['ratio_median'])}, largest "
                                 f"{_num(s['ratio_max'])}; {_num(100 * s['within_1_5'], 2)} % within 1.5x"])
        q = f.get("dynamics")
        if q and "error" in q:
            rows.append(["dynamics: dynamics-preserving potential", f"none: {q['error']}"])
        elif q:
            rows.append(["dynamics: pairs with D_AA(i) = D_CG(j) within "
                         f"{_num(q['pair_tolerance_se'])} s.e. (train / validation)",
                         f"{q['pairs']['pairs_train']} / {q['pairs']['pairs_validation']}"])
            for key, what in (("simulated", "test"), ("simulated_holdout", "held-out")):
                s = q.get(key)
                if s and s["n"]:
                    rows.append([f"dynamics: D_CG of the predicted potential against the target D_AA ({s['n']} "
                                 f"{what} samples run; {s['n_rows_outside_pairing_range']} outside the pairing's "
                                 "range)", f"median relative error {_num(100 * s['relative_error_median'], 2)} %; "
                                 f"{_num(100 * s['within_15_percent'], 2)} % within 15 %"])
        return [_table(["quantity", "value"], rows)]
    if table == "cross_validation":
        cv = f["cross_validation"]
        a = cv["alpha"]
        rows = [["alpha: median relative error out of fold (largest)",
                 f"{_num(100 * a['median_relative_error'], 2)} % ({_num(100 * a['max_relative_error'], 2)} %)"],
                ["alpha: a constant alpha (each fold's training mean)",
                 f"{_num(100 * a['constant_baseline_median_relative_error'], 2)} %"],
                ["alpha: the measured alphas' own relative error (median)",
                 f"{_num(100 * a['median_relative_error_of_measured_alpha'], 2)} %"],
                ["alpha: measured inside the predicted 68 % / 95 % intervals",
                 f"{_num(100 * a['within_68'], 2)} % / {_num(100 * a['within_95'], 2)} %"]]
        p = cv.get("potential")
        if p:
            rows.append(["structure: median table RMS out of fold (kT, where U < 5 kT)",
                         _num(p["table_rms_kT_median"], 2)])
            s = p["simulated"]
            if s["n"]:
                rows.append([f"structure: RDF error of the predicted potential over the sample's own IBI one ({s['n']} "
                             "samples run)", f"median {_num(s['ratio_median'])}, largest {_num(s['ratio_max'])}; "
                             f"{_num(100 * s['within_1_5'], 2)} % within 1.5x"])
        q = cv.get("dynamics")
        if q:
            s = q["simulated"]
            rows.append(["dynamics: folds without enough D_AA = D_CG pairs to train",
                         f"{q['folds_without_pairs']} of {q['folds']}"])
            if s["n"]:
                rows.append([f"dynamics: D_CG of the predicted potential against the target D_AA ({s['n']} samples "
                             "run)", f"median relative error {_num(100 * s['relative_error_median'], 2)} %; "
                             f"{_num(100 * s['within_15_percent'], 2)} % within 15 %"])
        return [_table([f"out of fold ({cv['folds']} folds, {a['n']} samples)", "value"], rows)]
    raise ValueError(f"unknown study_learn table {table!r}")


def _pair(v, digits: int = 3) -> str:
    """A [value, error] pair as "value ± error"."""
    if not v:
        return ""
    value, err = v
    return _num(value, digits) if err is None else f"{_num(value, digits)} ± {_num(err, 1)}"


#: study_neural_structure's models by their keys in the models, long-runs and noise figures
_NS_MODELS = {"ibi": "IBI", "neural": "network (force matching)", "neural_refined": "network + pair corrections",
              "neural_refined_bonded": "network + pair and bonded corrections (Boltzmann-inverted)",
              "neural_refined_moments": "network + pair and bonded corrections (moment-matching)"}


def _ns_label(key: str) -> str:
    """The label of a study_neural_structure model under any of its keys (``neural_refined_x``, the force-error
    figure's ``network_refined_x``, the speed figure's ``refined_x``; ``network`` is the force-matched network)."""
    if key == "network":
        key = "neural"
    elif key.startswith("network_refined"):
        key = "neural" + key[len("network"):]
    elif key.startswith("refined"):
        key = "neural_" + key
    return _NS_MODELS.get(key, key)


def _study_neural_structure(d, table):
    f = d["figures"]
    if table == "models":
        rows = []
        for key, label in _NS_MODELS.items():
            m = f.get("models", {}).get(key)
            if not m:
                continue
            p = m.get("pressure_bar") or {}
            rows.append([label, ", ".join(_num(v, 2) for v in m["rdf_inter"].values()), _num(m["rdf_com"], 2),
                         ", ".join(_num(v, 3) for v in m["bonded_overlap"].values()),
                         _pair(m.get("three_body_overlap"), 4), _pair(m.get("coordination_overlap"), 3),
                         _pair(p.get("model"), 4)])
        ref = next((m["pressure_bar"]["reference"] for m in f.get("models", {}).values() if m.get("pressure_bar")), None)
        return [_table(["model", "RDF errors, bead pairs", "RDF error, COM", "bonded overlaps",
                        "3-body angle overlap", "coordination overlap",
                        f"pressure (bar; AA {_pair(ref, 3)})" if ref else "pressure (bar)"], rows)]
    if table == "force_map":
        m = f["force_map"]
        rows = [["variance of the mapped forces, optimal / sum map, by bead (fit frames)",
                 ", ".join(f"{k} {_num(v, 3)}" for k, v in m["variance_ratio_by_bead"].items())],
                [f"the same on the {m['judged_frames']} held-out frames (all beads)",
                 _num(m["variance_ratio_held_out"], 3)],
                ["noise fraction by the force autocorrelation (lower bound), sum / optimal map",
                 f"{_pair([m['noise_sum_map']['noise_fraction'], m['noise_sum_map']['noise_fraction_err']], 3)} / "
                 f"{_pair([m['noise_optimal_map']['noise_fraction'], m['noise_optimal_map']['noise_fraction_err']], 3)}"],
                ["bias test: projection on the IBI forces, optimal minus sum, relative",
                 _pair(m["projection_on_ibi_forces_relative_difference"], 2)]]
        return [_table(["quantity", "value"], rows)]
    if table == "force_map_train":
        t = f["force_map_train"]
        rows = []
        for key, label in (("sum_map", "sum map (the demo's network)"), ("optimal_map", "least-noise map")):
            e = t["force_mse"][key]
            m = t["structure"]["neural" if key == "sum_map" else "neural_optimal_map"]
            rows.append([label, _pair([e["on_sum_map_targets"]["mse"], e["on_sum_map_targets"]["mse_err"]], 4),
                         _pair([e["on_optimal_map_targets"]["mse"], e["on_optimal_map_targets"]["mse_err"]], 4),
                         ", ".join(_num(v, 2) for v in m["rdf_inter"].values()), _num(m["rdf_com"], 2),
                         ", ".join(_num(v, 3) for v in m["bonded_overlap"].values()),
                         _pair(m.get("three_body_overlap"), 4), _pair(m.get("coordination_overlap"), 3)])
        return [_table(["network trained on", f"force MSE on {t['validation_frames']} held-out frames, sum-map "
                        "targets", "... least-noise-map targets", "RDF errors, bead pairs", "RDF error, COM",
                        "bonded overlaps", "3-body angle overlap", "coordination overlap"], rows)]
    if table == "refinement":
        rows = []
        # records from before bonded_update (pair-only and the first bonded ones) were Boltzmann-inverted
        runs = [{**f[k], "bonded_update": f[k].get("bonded_update") or "boltzmann"}
                for k in sorted(f) if k.startswith("refinement")]
        for r in sorted(runs, key=lambda r: (r.get("refine_bonded", False), r["bonded_update"],
                                             r.get("core_curvature", 1e3))):
            m = r.get("bonded_moments")
            m = (", ".join(f"{k} {v}" for k, v in m.items()) if isinstance(m, dict) else f"{m}") if m else ""
            bonded = (f"pair and moment-matching bonded corrections{f' ({m} moments)' if m else ''}"
                      if r["bonded_update"] == "moments" else "pair and Boltzmann-inverted bonded corrections")
            what = ((bonded if r.get("refine_bonded") else "pair corrections")
                    + f", core wall >= {_num(r.get('core_curvature', 1e3), 2)} kJ/mol/nm^2"
                    + (f", tolerance {_num(r['tolerance'], 2)}" if r.get("tolerance") else ""))
            rows += [[f"IBI iterations on top of the network at {_num(r['timestep_fs'], 2)} fs ({what})",
                      f"{r['iterations']} finished; " + (f"then it blew up: {r['failed']}" if r.get("failed")
                                                          else f"best {r['best_iteration']} ({r['stop_reason']})")],
                     [f"largest RDF error by iteration ({what})",
                      ", ".join(_num(v, 2) for v in r["rdf_error_by_iteration"])],
                     [f"pressure by iteration, bar ({what})",
                      ", ".join(_num(v, 3) for v in r["pressure_bar_by_iteration"])]]
            overlaps = [o for o in r.get("bonded_overlap_by_iteration") or [] if o]
            if overlaps:
                rows.append([f"bonded overlaps by iteration ({what})",
                             "; ".join(", ".join(f"{k} {_num(v, 3)}" for k, v in o.items()) for o in overlaps)])
            if r.get("temperature_K_by_iteration"):
                rows.append([f"mean kinetic temperature by iteration, K ({what})",
                             ", ".join(_num(v, 3) for v in r["temperature_K_by_iteration"])])
            if r.get("max_correction_curvature"):
                rows.append([f"largest curvature of the bonded corrections, kJ/mol/nm^2 (bonds) or /rad^2 (angles) "
                             f"({what})",
                             ", ".join(f"{k} {_num(v, 2)}" for k, v in r["max_correction_curvature"].items())])
            if r.get("run_at_network_timestep"):
                rows.append([f"its run at the network's timestep ({what})", r["run_at_network_timestep"]])
        fm = f.get("force_matching_mse")
        if fm:
            rows.append(["force MSE on the mapped forces ((kJ/mol/nm)^2): " + " / ".join(_ns_label(k) for k in fm),
                         " / ".join(_pair([v["mse"], v["mse_err"]], 4) for v in fm.values())])
        return [_table(["quantity", "value"], rows)]
    if table in ("rdf_noise", "long_runs"):
        noise = f["rdf_noise"] if table == "rdf_noise" else f["long_runs"]["rdf_noise"]
        models = {} if table == "rdf_noise" else f["long_runs"]["models"]
        pairs = sorted({p for v in noise["models"].values() for p in v}, key=lambda p: (p == "COM-COM", p))
        com = "COM-COM" in pairs  # the COM error with its floor (else the comparison's, without)
        rows = []
        for key, v in noise["models"].items():
            row = [_ns_label(key)] + [f"{_num(v[p]['error'], 2)} ({_num(v[p]['noise_floor'], 2)})" if p in v else ""
                                      for p in pairs]
            m = models.get(key)
            if table == "long_runs":
                row += (([] if com else [_num(m["rdf_com"], 2)])
                        + [", ".join(_num(x, 3) for x in m["bonded_overlap"].values()),
                           _pair(m.get("three_body_overlap"), 4), _pair(m.get("coordination_overlap"), 3),
                           _num(m["timestep_fs"], 2)] if m else [""] * (4 if com else 5))
            rows.append(row)
        header = ["model"] + [f"RDF error {p} (noise floor)" for p in pairs]
        if table == "long_runs":
            header += ([] if com else ["RDF error, COM"]) + ["bonded overlaps", "3-body angle overlap",
                                                             "coordination overlap", "timestep (fs)"]
        caption = (f"runs of {_num(f['long_runs']['ps'], 3)} ps each" if table == "long_runs" else "the demo's runs (the networks' 100 ps, IBI's 500 ps)")
        return [_table(header, rows, caption=caption + f"; RMS of g - g_AA over 0-{_num(noise['cutoff_nm'], 2)} nm "
                       f"in {_num(noise['bin_nm'], 1)} nm bins")]
    if table == "three_body":
        tb = f["three_body"]
        rows = []
        for key, m in tb["models"].items():
            cells = []
            for q in ("three_body_angle", "coordination"):
                v, e = m[q]["minus_ibi"], m[q]["err"]
                cells.append(f"{_pair([v, e], 2)} ({_num(v / e, 2)} s.e.)" if e else _num(v, 2))
            rows.append([_ns_label(key)] + cells)
        return [_table(["model", "3-body angle overlap minus IBI's", "coordination overlap minus IBI's"], rows,
                       caption=f"the {tb['runs'].replace('ps', ' ps')} runs; neighbours within "
                               f"{_num(tb['r_cut_nm'], 3)} nm; paired "
                               f"jackknife over {tb['n_blocks']} blocks of the AA reference and both runs "
                               "(positive: closer to AA than IBI)")]
    if table == "speed":
        sp = f["speed"]
        rows = [[_ns_label(k), _num(v, 3), ", ".join(_num(x, 3) for x in sp["steps_per_s"][k]),
                 "1" if k == "network" else _num(sp.get(f"{k}_over_network"), 3)]
                for k, v in sp["median_steps_per_s"].items()]
        load = sp.get("load_average_before_after")
        caption = (f"{sp['rounds']} rounds of {sp['steps_per_round']} steps at {_num(sp['timestep_fs'], 2)} fs, "
                   "round-robin in one process" + (f"; load average {_num(load[0][0], 2)} before, "
                                                   f"{_num(load[-1][0], 2)} after" if load else ""))
        return [_table(["model", "steps/s (median)", "per round", "over the network"], rows, caption=caption)]
    raise ValueError(f"unknown study_neural_structure table {table!r}")


def _hexane_priors(d, table):
    f = d["figures"]
    rows = []
    for name, r in f["runs"].items():
        m = r["prior_margin"]
        rows.append([name, _num(r["validation_mse"], 4), _num(r["prior_only_mse"], 4), _num(r["zero_force_mse"], 4),
                     f"{100 * m['relative_improvement']:.2f} % ± {100 * m['relative_improvement_err']:.2f} %",
                     _num(m["beats_priors"])])
    rows.append(["spread between seeds", "", "", "", f"{100 * f['seed_spread']:.2f} %",
                 "yes" if f["beats_priors"] else "no"])
    return [_table(["training", "validation force MSE ((kJ/mol/nm)^2)", "priors alone", "zero force",
                    "improvement over the priors (block s.e.)", "beats the priors"], rows)]


def _pair_layout(d, table):
    f = d["figures"]

    def cell(r, arm, digits=3):
        if f"{arm}_us_per_bead_step" not in r:
            return "not run"
        lo, hi = r[f"{arm}_us_spread"]
        return f"{_num(r[f'{arm}_us_per_bead_step'], digits)} ({_num(lo, 2)}-{_num(hi, 2)})"

    if table == "goals":
        rows = [[goal.replace("_", " "), _num(g["value"], 3), "met" if g["met"] else "not met"]
                for goal, g in f.get("goals", {}).items()]
        return [_table(["goal", "value", "status"], rows)]
    if table == "memory":
        arms = ["groups", "slot", "compiled", "lammps"]
        rows = [[_num(r["beads"])] + [_num(r.get("context_memory_mb", {}).get(a), 3)
                                      if a in r.get("context_memory_mb", {}) else "—" for a in arms]
                for r in f["sizes"]]
        return [_table(["beads", "groups (MB)", "slot (MB)", "compiled (MB)", "LAMMPS (MB, its estimate)"], rows)]
    rows = []
    for r in f["sizes"]:
        lammps = cell(r, "lammps") if "lammps_us_per_bead_step" in r else "not run"
        rows.append([_num(r["beads"]), cell(r, "groups"), cell(r, "slot"), cell(r, "compiled"), lammps,
                     _num(r.get("slot_over_compiled"), 3) if "slot_over_compiled" in r else "—",
                     _num(r.get("compiled_over_lammps"), 3) if "compiled_over_lammps" in r else "—",
                     _num(r["load_average"][0][0], 3)])
    return [_table(["beads", "groups (us per bead-step; spread)", "slot", "compiled", "LAMMPS (loop time)",
                    "slot / compiled", "compiled / LAMMPS", "load (1 min)"], rows)]


def _neural_scaling(d, table):
    f = d["figures"]

    def cell(r, arm):
        if arm not in r:
            return "not run"
        a = r[arm]
        lo, hi = a["spread_us_per_bead_step"]
        return f"{_num(a['us_per_bead_step'])} ({_num(lo, 2)}-{_num(hi, 2)})"

    rows = [[_num(r["beads"]), _num(r["box_nm"]), cell(r, "compiled"), cell(r, "torchforce"),
             _num(r.get("torchforce_over_compiled")), _num(r["compiled"]["rss_growth_mb"]),
             _num(r.get("torchforce", {}).get("rss_growth_mb")), _num(r["load_before"][0])]
            for r in sorted(f["sizes"].values(), key=lambda r: r["beads"])]
    caption = (f"compiled cost per bead-step: max / min over the sizes {_num(f['compiled_flatness'])} "
               "(goal: within 1.5)")
    return [_table(["beads", "box (nm)", "compiled (us per bead-step; spread)", "TorchForce", "TorchForce / compiled",
                    "compiled memory (MB)", "TorchForce memory (MB)", "load (1 min)"], rows, caption)]


def _training_peer(d, table):
    f = d["figures"]
    rows = []
    for arm, label in (("ours", "openmm_cgml (CGSchNet, the trainer's path)"),
                       ("torchmd_net", f"torchmd-net {d['settings']['torchmd_net']} (TorchMD_GN)")):
        lo, hi = f[arm]["spread_frames_per_s"]
        rows.append([label, _num(f["parameters"][arm]), f"{_num(f[arm]['frames_per_s'])} ({_num(lo)}-{_num(hi)})"])
    caption = (f"{_num(f['beads_per_frame'])} beads per frame, {f['frames_per_batch']} frames per step; ours / "
               f"torchmd-net {_num(f['ours_over_torchmd_net'])}x; load {_num(f['load_before'][0])}")
    return [_table(["trainer", "trainable parameters", "frames/s (spread)"], rows, caption)]


def _temperature(d, table):
    f = d["figures"]
    if table == "goals":
        rows = []
        for g in f["goals"]:
            figures = ", ".join(f"{k} {_num(v, 3) if isinstance(v, (int, float)) else v}" for k, v in g.items()
                                if k not in ("goal", "met"))
            rows.append([g["goal"], figures, {True: "met", False: "not met", None: "not measured"}[g["met"]]])
        return [_table(["goal", "figures", "status"], rows)]
    if table == "ea":
        rows = [[species, model, f"{_num(fit['Ea'], 3)} ± {_num(fit['Ea_err'], 2)}",
                 "—" if fit.get("deviation") is None else f"{100 * fit['deviation']:.0f} %",
                 "yes" if fit.get("all_converged") else "no"]
                for species, fits in f["activation_energy"].items() for model, fit in fits.items()]
        return [_table(["species", "model", "Ea (kJ/mol)", "|Ea - Ea_AA| / Ea_AA", "every D diffusive"], rows)]
    if table == "loto":
        rows = []
        for name, rec in f["leave_one_out"].items():
            for species, p in rec["predictions"].items():
                rows.append([name, _num(rec["held_out_K"], 4), species, _num(p.get("alpha"), 3),
                             _num(p.get("D_AA_predicted"), 3), _num(p.get("D_AA"), 3),
                             "—" if p.get("relative_error") is None else f"{100 * p['relative_error']:+.0f} %"])
        return [_table(["model", "held out (K)", "species", "alpha(T)", "D_AA predicted (nm^2/ps)",
                        "D_AA measured", "error"], rows)]
    if table == "rdf":
        temps = list(f["rdf_error"])
        models = list(f["rdf_error"][temps[0]])
        rows = [[m, *(_num(f["rdf_error"][t].get(m), 3) for t in temps)] for m in models]
        return [_table(["model", *(f"{t} K" for t in temps)], rows)]
    if table == "diffusion":  # D per species, model and temperature, 1e-3 nm^2/ps; * where not diffusive
        temps = sorted({t for per in f["diffusion"].values() for e in per.values() for t in e["temperatures_K"]})
        rows = []
        for model, per in f["diffusion"].items():
            for species, e in per.items():
                cells = {t: f"{_num(1e3 * d, 3)} ± {_num(1e3 * err, 2)}{'' if ok else ' *'}"
                         for t, d, err, ok in zip(e["temperatures_K"], e["D_nm2_per_ps"], e["D_err_nm2_per_ps"],
                                                  e["converged"])}
                rows.append([model, species, *(cells.get(t, "—") for t in temps)])
        return [_table(["model", "species", *(f"{_num(t, 4)} K" for t in temps)], rows),
                nodes.paragraph(text=f"Finite size: {f.get('finite_size', 'not corrected')}. "
                                     "* not from a diffusive regime (flagged by the study).")]
    if table == "viscosity":
        temps = list(f["viscosity_mPa_s"])
        models = list(f["viscosity_mPa_s"][temps[0]])

        def eta(rec):
            if not rec or "error" in rec:
                return "—" if not rec else "failed"
            return f"{_num(rec['viscosity_mPa_s'], 3)} ± {_num(rec['viscosity_err_mPa_s'], 2)}"
        rows = [[m, *(eta(f["viscosity_mPa_s"][t].get(m)) for t in temps)] for m in models]
        return [_table(["liquid", *(f"{t} K" for t in temps)], rows)]
    if table == "cost":
        rows = [[kind, _num(v["wall_h"], 3), _num(v["cpu_h"], 3)] for kind, v in f["study_cost_h"].items()]
        return [_table(["step", "wall (h)", "CPU (h)"], rows)]
    rows = []
    for t, per in f["speedup_per_ns"].items():
        for model, x in per.items():
            lo, hi = f["seconds_per_ns_spread"][t][model]
            rows.append([t, model, _num(x, 3), _num(f["seconds_per_ns"][t]["AA"], 3),
                         f"{_num(f['seconds_per_ns'][t][model], 3)} ({_num(lo, 2)}-{_num(hi, 2)})",
                         _num(f["timestep_fs"][t][model], 2), _num(f["load"][t]["before"][0], 3)])
    return [_table(["T (K)", "model", "CG / AA per ns", "AA s/ns", "CG s/ns (spread)", "CG timestep (fs)",
                    "load (1 min)"], rows)]


def _polymer(d, table):
    f = d["figures"]
    st = f["study"]

    def est(x, digits=3):
        return "—" if x is None else f"{_num(x[0], digits)} ± {_num(x[1], 2)}"

    def chain_row(label, r):
        ee, msd = r.get("end_to_end", {}), r.get("com_msd", {})
        regime = "—" if not msd else f"{msd['regime']} (exponent {_num(msd.get('exponent'), 2)})"
        d_com = "—" if msd.get("D_nm2_ps") is None else f"{_num(msd['D_nm2_ps'], 3)} ± {_num(msd['D_err_nm2_ps'], 2)}"
        drift = r.get("ree2_drift")  # records from before the key: no column value
        drift = "—" if drift is None else (f"{est(drift['change_nm2'])}"
                                           f"{'' if drift['stationary'] else ' (drifts)'}")
        return [label, _num(r["beads_per_chain"], 3), _num(r["duration_ps"], 4), est(r["rg2_nm2"]),
                est(r["ree2_nm2"]), est(r["ree2_over_rg2"]), _num(ee.get("tau_ps"), 3), _num(ee.get("decayed")),
                drift, regime, d_com]

    chain_header = ["run", "beads/chain", "run (ps)", "<Rg^2> (nm^2)", "<Ree^2> (nm^2)", "<Ree^2>/<Rg^2>",
                    "tau_ee (ps)", "relaxed", "<Ree^2>: 2nd - 1st half (nm^2)", "chain-COM MSD", "D_COM (nm^2/ps)"]
    if table == "chains":
        return [_table(chain_header, [chain_row(label, r) for label, r in st["chains"].items()])]
    if table == "transfer":  # with, per CG run, its largest chain extent against half its box
        def box_cell(r):
            b = r.get("chain_box")
            return "—" if b is None else (f"{_num(b['largest_extent_nm'], 3)} / {_num(b['limit_nm'], 3)} "
                                          f"({b['chains_at_limit']} of {b['chains']})")
        rows = []
        for name, rec in st.get("transfer", {}).items():
            aa = rec.get("aa")
            aa_label = "AA" if aa is None or aa.get("hydrogen_mass_da") is None else \
                f"AA (H {_num(aa['hydrogen_mass_da'], 2)} Da: tau and D not physical)"
            runs = ({aa_label: aa} if aa is not None else {}) | rec["models"]
            rows += [[f"{name}: {label}", "did not run: " + r["failed"], *[""] * (len(chain_header) - 1)]
                     if "failed" in r else [*chain_row(f"{name}: {label}", r), box_cell(r)]
                     for label, r in runs.items()]
        return [_table([*chain_header, "largest chain extent / half box, nm (chains reaching it)"], rows)]
    if table == "ibi":
        b = st["ibi"]
        target = "none" if b.get("target_pressure_bar") is None else f"{_num(b['target_pressure_bar'], 4)} bar"
        first = b["first_iteration"]
        return [_table(["iterations (stop)", "target pressure", "best iteration", "its RDF error", "its pressure (bar)",
                        "pressure reached", "first iteration: RDF error, pressure (bar)"],
                       [[f"{b['iterations']} ({b['stop_reason']})", target, str(b["best_iteration"]),
                         _num(b["rdf_error"], 3), _num(b["pressure_bar"], 4), _num(b.get("pressure_held")),
                         f"{_num(first['rdf_error'], 3)}, {_num(first['pressure_bar'], 4)}"]])]
    if table == "scaling":  # <Rg^2>/N and <Ree^2>/N (nm^2 per bead) against beads per chain N
        rows = [[label, _num(n, 3), est([rg2[0] / n, rg2[1] / n]), est([ree2[0] / n, ree2[1] / n])]
                for label, points in st.get("scaling", {}).items() for n, rg2, ree2 in points]
        return [_table(["run", "beads per chain N", "<Rg^2>/N (nm^2)", "<Ree^2>/N (nm^2)"], rows)]
    if table in ("comparison", "transfer_comparison"):  # rows against AA: the melt's models, or the transfers'
        columns = st["comparison"] if table == "comparison" else {
            f"{name}: {label}": found for name, rec in st.get("transfer", {}).items()
            for label, found in rec.get("comparison", {}).items()}
        models = list(columns)
        by_quantity: dict = {}
        for label in models:
            for r in columns[label]:
                by_quantity.setdefault((r["quantity"], r["metric"]), {})[label] = r
        rows = [[q, m, *("—" if label not in per else (_num(per[label]["value"], 3) + (
            "" if per[label].get("value_err") is None else f" ± {_num(per[label]['value_err'], 2)}"))
            for label in models)] for (q, m), per in by_quantity.items()]
        return [_table(["quantity", "metric", *models], rows)]
    if table == "alpha":
        rows = [[model, *(("not measured: " + a["reason"]) if a["alpha"] is None else
                          f"{_num(a['alpha'], 3)} ± {_num(a['alpha_err'], 2)}" for a in (both["chain_com"],
                                                                                          both["monomer"]))]
                for model, both in st.get("alpha", {}).items()]
        return [_table(["model", "alpha, chain centres of mass", "alpha, monomers"], rows)]
    if table == "npt":
        aa = st["aa"]
        rows = [["AA melt (its NPT stage)", f"{_num(aa['density_g_cm3'], 4)} (sd {_num(aa['density_std_g_cm3'], 2)})",
                 "—", "—", "—"]]
        for label, r in st.get("npt", {}).items():
            rel = r.get("relative_to_reference")
            rows.append([label, f"{_num(r['density_g_cm3'], 4)} ± {_num(r['density_err_g_cm3'], 2)}",
                         "—" if rel is None else f"{100 * rel:+.1f} %", _num(r["settled"]), _num(r.get("holds"))])
        return [_table(["model", "density (g/cm^3)", "from AA", "settled", "holds the AA density"], rows)]
    rows = []
    for label, sec in f["seconds_per_ns"].items():
        lo, hi = f["seconds_per_ns_spread"][label]
        relax = f["speedup_relaxation"].get(label, {})
        rows.append([label, _num(f["timestep_fs"][label], 3), f"{_num(sec, 3)} ({_num(lo, 3)}-{_num(hi, 3)})",
                     _num(f["speedup_per_ns"].get(label), 3) if label != "AA" else "1",
                     "—" if label == "AA" else (_num(relax.get("value"), 3) if relax.get("value") is not None
                                                else "not measured (a run did not relax)")])
    return [_table(["arm", "timestep (fs)", "wall s per simulated ns (spread)", "CG / AA per ns",
                    "CG / AA per chain relaxation"], rows)]


def _melt_start(d, table):
    """study_melt_start: unperturbed start conformations, checked on C16 and used for the C32 melt."""
    f = d["figures"]

    def est(x, digits=3):
        return "—" if x is None else f"{_num(x[0], digits)} ± {_num(x[1], 2)}"

    if table == "validation":
        v = f["c16_validation"]
        rows = []
        for key, label in (("ree2_nm2", "<Ree^2> (nm^2)"), ("rg2_nm2", "<Rg^2> (nm^2)")):
            diff = v[f"{key[:-4]}_difference"]
            rows.append([label, est(v["unperturbed"][key]), est(v["melt"][key]),
                         f"{100 * diff['relative']:+.1f} % ± {100 * diff['relative_err']:.1f} %",
                         _num(diff["within_2_se"])])
        return [_table(["C16 beads", f"{v['copies']} unperturbed chains", "relaxed AA melt",
                        "difference", "within 2 s.e."], rows)]
    if table == "windows":
        rows = [[f"{_num(w['from_ps'])}-{_num(w['to_ps'])}", est(w["ree2_nm2"])] for w in f["c32"]["windows"]]
        return [_table(["production window (ps)", "<Ree^2> (nm^2, s.e. over chains)"], rows)]
    if table == "extended_windows":
        rows = [[f"{_num(w['from_ps'] / 1000)}-{_num(w['to_ps'] / 1000)}", est(w["ree2_nm2"])]
                for w in f["c32_extended"]["windows_1ns"]]
        return [_table(["production window (ns)", "<Ree^2> (nm^2, s.e. over chains)"], rows)]
    if table == "rouse":
        r = f["c32_extended"]["rouse"]
        e2e = f["c32_extended"]["end_to_end"]
        rows = [["end-to-end", "—", _num(e2e["tau_integral_ps"]), _num(e2e["tau_kww_ps"]), _num(e2e["beta_kww"], 2),
                 _num(e2e["decayed"])]]
        rows += [[f"Rouse p = {p}", est([a, ae], 3), _num(t), _num(tk), _num(b, 2), _num(dec)]
                 for p, a, ae, t, tk, b, dec in zip(r["p"], r["amplitude2_nm2"], r["amplitude2_err_nm2"],
                                                   r["tau_integral_ps"], r["tau_kww_ps"], r["beta_kww"], r["decayed"])]
        return [_table(["C32 AA melt, 11 ns", "<X_p^2> (nm^2)", "tau, integral (ps)", "tau, KWW (ps)", "beta, KWW",
                        "decayed"], rows)]
    if table == "scaling":  # <Rg^2>/N and <Ree^2>/N of AA and the C16 IBI model at C16, C32 and C64
        tr = f["c32_transfer"]
        runs = [("AA", "C16", tr["c16"]["aa"]), ("IBI", "C16", tr["c16"]["ibi"]), ("AA", "C32", tr["record"]["aa"]),
                ("IBI", "C32", tr["record"]["models"]["ibi"])]
        if "c64" in tr:
            runs.append(("IBI", "C64", tr["c64"]["ibi"]))
        rows = []
        for model, chain, r in runs:
            n = r["beads_per_chain"]
            drift, e2e = r["ree2_drift"], r.get("end_to_end", {})
            rows.append([model, chain, _num(n), _num(r["duration_ps"]), est([r["rg2_nm2"][0] / n, r["rg2_nm2"][1] / n], 3),
                         est([r["ree2_nm2"][0] / n, r["ree2_nm2"][1] / n], 3),
                         f"{_num(drift['change_nm2'][0], 2)} ± {_num(drift['change_nm2'][1], 2)}"
                         + ("" if drift["stationary"] else " (drift)"),
                         _num(e2e.get("tau_ps")) + ("" if e2e.get("decayed") else " (lower bound)")])
        return [_table(["model", "chains", "beads N", "run (ps)", "<Rg^2>/N (nm^2)", "<Ree^2>/N (nm^2)",
                        "<Ree^2> change between halves", "tau_ee (ps)"], rows)]
    if table == "speed":
        sp = f["c32_speed"]
        rows = [[arm, _num(sp["timestep_fs"][arm], 2), _num(sec, 4),
                 f"{_num(sp['seconds_per_ns_spread'][arm][0], 4)}-{_num(sp['seconds_per_ns_spread'][arm][1], 4)}",
                 _num(sp["tau_ee_ps"][arm])] for arm, sec in sp["seconds_per_ns"].items()]
        return [_table(["C32 melt, CPU platform", "timestep (fs)", "wall s per simulated ns (median)", "spread",
                        "tau_ee (ps)"], rows),
                _table(["CG/AA speed-up", "value"], [
                    ["per simulated ns", _num(sp["speedup_per_ns"], 3)],
                    ["per chain relaxation (x tau_ee AA / tau_ee CG)",
                     _num(sp["speedup_relaxation"], 3) if sp["speedup_relaxation"] is not None
                     else sp["relaxation_note"]],
                    ["load (1, 5, 15 min) before / after", f"{sp['load_before']} / {sp['load_after']}"]])]
    if table == "transfer":
        rec = f["c32_transfer"]["record"]
        rows = []
        for name, r in (("AA (11 ns, CPU + GPU)", rec["aa"]), *((f"{m.upper()} from C16", r)
                                                                for m, r in rec["models"].items())):
            e2e, drift = r.get("end_to_end", {}), r["ree2_drift"]
            rows.append([name, _num(r["duration_ps"]), est(r["rg2_nm2"], 4), est(r["ree2_nm2"]),
                         est(r["ree2_over_rg2"]), f"{_num(drift['change_nm2'][0], 2)} ± {_num(drift['change_nm2'][1], 2)}"
                         + ("" if drift["stationary"] else " (drift)"),
                         _num(e2e.get("tau_ps")) + ("" if e2e.get("decayed") else " (lower bound)")])
        table_rows = [_table(["C32 melt", "run (ps)", "<Rg^2> (nm^2)", "<Ree^2> (nm^2)", "<Ree^2>/<Rg^2>",
                              "change between halves", "tau_ee (ps)"], rows)]
        for m, r in rec["models"].items():
            if "comparison" in r:
                table_rows.append(_table(["quantity", "metric", f"{m.upper()} against AA"], [
                    [c["quantity"], c["metric"], _num(c["value"], 3) + ("" if c.get("value_err") is None
                                                                         else f" ± {_num(c['value_err'], 2)}")]
                    for c in r["comparison"]]))
        return table_rows
    c32, old = f["c32"], f["c32_previous"]

    def arm(name, start, rec, density):
        drift = rec["ree2_drift"]
        e2e = rec.get("end_to_end", {})
        return [name, start, _num(rec["duration_ps"]), _num(density, 4), est(rec["rg2_nm2"], 4), est(rec["ree2_nm2"]),
                est(drift["first_half_nm2"]), est(drift["second_half_nm2"]),
                f"{_num(drift['change_nm2'][0], 2)} ± {_num(drift['change_nm2'][1], 2)}"
                + ("" if drift["stationary"] else " (drift)"),
                f"{_num(e2e.get('tau_ps'))}" + ("" if e2e.get("decayed") else " (lower bound: not decayed)")]

    rows = [arm("AA (stop 40)", "rigid copies of one conformer", old["aa"], old["aa"].get("density_g_cm3")),
            arm("AA (this study)", "unperturbed conformations", c32["chain_record"], c32["npt_density_g_cm3"]),
            arm("IBI transfer (stop 40)", "grown random walks", old["ibi"], None)]
    if "c32_extended" in f:
        rows.insert(2, arm("AA, continued on a GPU", "unperturbed conformations", f["c32_extended"]["chain_record"],
                           c32["npt_density_g_cm3"]))
    return [_table(["C32 melt", "start", "run (ps)", "density (g/cm^3)", "<Rg^2> (nm^2)", "<Ree^2> (nm^2)",
                    "first half", "second half", "change", "tau_ee (ps)"], rows)]


def _il_references(d: dict, table: str) -> list:
    """study_il_references: the ionic liquid's AA references across temperatures, as far as they ran."""
    f = d["figures"]

    def est(x, e, scale=1.0):
        return "—" if x is None else f"{_num(x * scale, 3)} ± {_num(e * scale, 2)}"

    if table == "references":
        rows = []
        for r in f["references"]:
            row = [_num(r["temperature_K"]), _num(r["npt_density_g_cm3"], 4),
                   f"{_num(r['production_ps'])}" + ("" if r["completed"] else " (stopped)"), _num(r["frames"]),
                   r["platform"] or "—"]
            for rec in r["D"].values():
                row.append(est(rec["D_nm2_per_ps"], rec["D_err_nm2_per_ps"], 1e5)
                           + ("" if rec["diffusive"] else " (not diffusive)"))
            rows.append(row)
        ions = list(f["references"][0]["D"])
        return [_table(["T (K)", "NPT density (g/cm^3)", "production (ps)", "frames", "platform",
                        *(f"D {ion} (1e-5 nm^2/ps)" for ion in ions)], rows)]
    if table == "arrhenius":
        rows = []
        for ion, fits in f["arrhenius"].items():
            for label in ("all", "diffusive"):
                fit = fits[label]
                rows.append([ion, label, ", ".join(_num(t) for t in fit["temperatures_K"]),
                             est(fit["Ea_kJ_mol"], fit.get("Ea_err_kJ_mol")) if fit["Ea_kJ_mol"] is not None
                             else fit.get("note", "—"),
                             _num(fit.get("chi2_per_dof"), 2) if fit.get("chi2_per_dof") is not None else "—",
                             _num(fits["source_Ea_AA_kJ_mol"]) if fits["source_Ea_AA_kJ_mol"] else "—"])
        return [_table(["ion", "temperatures fitted", "T (K)", "Ea (kJ/mol)", "chi^2/dof", "Ruza, AA"], rows)]
    if table == "gpu":
        g = f["gpu"]
        rows = [[name, _num(r["equilibration_steps_per_s"], 4), _num(r.get("production_steps_per_s_lower_bound"), 3)]
                for name, r in g["per_run"].items()]
        return [_table(["reference", "NVT+NPT, Langevin (steps/s)", "production, Bussi (steps/s, lower bound)"], rows),
                _table(["", "value"], [
                    ["runs sharing the GPU", _num(g["calls"][0]["runs"])],
                    ["GPU", g["calls"][0]["machine"]["gpu"]],
                    ["Bussi production / Langevin equilibration speed", _num(g["production_over_equilibration"], 2)]])]
    raise ValueError(f"unknown table {table!r} for study_il_references")


def _thermostat_interval(d: dict, table: str) -> list:
    """bench_thermostat_interval: Bussi's rescaling every step and every n steps against Langevin and NVE."""
    f, st = d["figures"], d["settings"]
    out = []
    aa_label = "AA water box, PME" if not st.get("aa_system") else f"AA reference {st['aa_system']}"
    for system, label in (("aa", aa_label), ("cg", "CG bead fluid")):
        r = f[system]
        rows = [[arm, f"{_num(a['ms_per_step'])} ({_num(a['spread_ms_per_step'][0])}-{_num(a['spread_ms_per_step'][1])})",
                 _num(r["over_langevin"][arm], 3), _num(a["mean_temperature_K"], 4)] for arm, a in r["arms"].items()]
        caption = (f"{label}: {r['particles']} particles, {_num(r['timestep_fs'])} fs, {r['steps_per_block']} steps per "
                   f"block, {st['rounds']} rounds on {st['platform']}"
                   + (f" ({st['threads']} thread{'s' if st['threads'] != 1 else ''})" if st.get("threads") else "")
                   + f"; Bussi every {st['interval']} steps is {_num(r['interval_speedup_over_every_step'], 3)}x as "
                   f"fast as every step; load {_num(r['load_before'][0])}-{_num(r['load_after'][0])}")
        out.append(_table(["integrator", "ms per step (spread)", "time / Langevin's", "mean T (K)"], rows, caption))
    return out


RENDERERS = {"aa_reference": _aa_reference, "bench_thermostat_interval": _thermostat_interval,
             "bench_thermostat_interval_cuda": _thermostat_interval,
             "bench_thermostat_interval_cuda_il": _thermostat_interval, "study_melt_start": _melt_start, "study_il_references": _il_references, "bench_temperature_tmp_two_cores": _temperature, "bench_pair_layout": _pair_layout,
             "study_hexane_priors": _hexane_priors, "bench_cg_speed": _cg_speed, "bench_ibi": _ibi,
             "bench_analysis": _analysis, "bench_neural": _neural, "bench_neural_scaling": _neural_scaling,
             "bench_training_peer": _training_peer,
             "study_dynamics": _study_dynamics,
             "bench_sweep": _sweep, "study_learn": _study_learn, "study_learn_transfer": _study_learn,
             "study_learn_tmp": _study_learn,
             "study_neural_structure": _study_neural_structure, "bench_polymer_pe_cpu": _polymer,
             "bench_polymer_pe_cpu_ibi": _polymer, "bench_polymer_pe_cpu_ibi_c32": _polymer,
             "bench_polymer_pe_cpu_inter": _polymer}


# ----------------------------------------------------------------------------- directives
class BenchmarkTable(SphinxDirective):
    """``cgml-benchmark NAME``: a table generated from ``benchmarks/results/NAME.json``."""

    required_arguments = 1
    option_spec = {"table": directives.unchanged}

    def run(self):
        name = self.arguments[0]
        path = RESULTS / f"{name}.json"
        self.env.note_dependency(str(path))
        if name not in RENDERERS:
            raise self.error(f"no renderer for benchmark {name!r}; known: {sorted(RENDERERS)}")
        try:
            return RENDERERS[name](_load(name), self.options.get("table", ""))
        except (KeyError, ValueError, TypeError) as exc:
            raise self.error(f"{path}: cannot render table {self.options.get('table', '')!r}: {exc!r}") from exc


class BenchmarkProvenance(SphinxDirective):
    """``cgml-provenance NAME``: the date, machine and versions recorded in ``NAME.json``."""

    required_arguments = 1
    option_spec = {"date": directives.unchanged}

    def run(self):
        name = self.arguments[0]
        path = RESULTS / f"{name}.json"
        self.env.note_dependency(str(path))
        d = _load(name)
        if d.get("date"):
            date = f"{d['date']} (recorded in the file)"
        elif self.options.get("date"):
            date = f"{self.options['date']}; the file records no date, this one is from its git history"
        else:
            date = "not recorded"
        m = d.get("machine", {})
        machine = (f"{m.get('processor', '?')}, {m.get('cpu_count', '?')} CPU cores, {m.get('platform', '?')}"
                   if m else "not recorded")
        versions = d.get("versions") or d.get("package_versions") or {}
        shown = ", ".join(f"{k} {versions[k]}" for k in KEY_VERSIONS if k in versions) or "not recorded"
        items = nodes.bullet_list()
        for label, text in (("file", f"benchmarks/results/{path.name}"), ("measured", date), ("machine", machine),
                            ("versions", shown)):
            para = nodes.paragraph()
            para += nodes.strong(text=f"{label}: ")
            para += nodes.literal(text=text) if label == "file" else nodes.Text(text)
            items += nodes.list_item("", para)
        return [items]


class Layers(SphinxDirective):
    """``cgml-layers``: the layer table of ``tests/test_architecture.py``."""

    def run(self):
        path = ROOT / "tests" / "test_architecture.py"
        self.env.note_dependency(str(path))
        tree = ast.parse(path.read_text())
        layers = None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "LAYERS" for t in node.targets):
                layers = ast.literal_eval(node.value)
        if layers is None:
            raise self.error(f"{path} defines no LAYERS")
        described = dict(re.findall(r"^(\d+)\. (.+?)(?=^\d+\. |^\S|\Z)", ast.get_docstring(tree) or "",
                                    re.M | re.S))
        rows = []
        for k, units in sorted(layers.items()):
            text = " ".join(described.get(str(k), "").replace("``", "").split()).rstrip(";.")
            rows.append([str(k), ", ".join(sorted(units)), text])
        return [_table(["layer", "modules and subpackages", "what lives there"], rows)]


class EntryPoints(SphinxDirective):
    """``cgml-entry-points``: the built-in plug-ins registered in ``pyproject.toml``."""

    def run(self):
        path = ROOT / "pyproject.toml"
        self.env.note_dependency(str(path))
        groups = tomllib.loads(path.read_text()).get("project", {}).get("entry-points", {})
        rows = [[group, name, target] for group, entries in groups.items() if group.startswith("openmm_cgml.")
                for name, target in entries.items()]
        if not rows:
            raise self.error(f"{path} registers no openmm_cgml entry points")
        return [_table(["entry-point group", "name", "object"], rows)]


def check_page_reference(app, env, node, contnode):
    """Warn about an unresolved Python reference written in a documentation page (not in a docstring).

    Sphinx is not nitpicky here (napoleon turns every word of a docstring's type into a reference), so a page's
    ``{class}`` or ``{func}`` that names a renamed or removed object would otherwise fail silently.
    """
    if node.get("refdomain") != "py":
        return None
    source = node.source or ""
    if source.endswith((".md", ".rst")) and "docstring of" not in source:
        logger.warning("the page refers to %s %r, which the API reference does not document",
                       node.get("reftype"), node.get("reftarget"), location=node, type="cgml", subtype="ref")
    return None


_ATTRIBUTE_DOCSTRINGS: dict[str, list[str]] = {}


def _keep_attribute_docstring(app, what, name, obj, options, lines):
    if what in ("attribute", "data", "property"):
        _ATTRIBUTE_DOCSTRINGS[name] = list(lines)


def _restore_attribute_docstring(app, what, name, obj, options, lines):
    """Undo napoleon's Google-style reading of an attribute docstring's first line.

    napoleon takes ``"X: Y"`` in the first line of an attribute or property docstring as "type X, description
    Y", even for numpydoc; the package's docstrings are numpydoc, where such a line is a sentence ("Sparse
    (n_beads, n_atoms) 0/1 matrix: the consistent force map ...").
    """
    original = _ATTRIBUTE_DOCSTRINGS.pop(name, None)
    if original is None or not any(line.startswith(":type:") for line in lines):
        return
    if not any(line.lstrip().startswith(":type:") for line in original):
        lines[:] = original


def setup(app):
    app.setup_extension("sphinx.ext.napoleon")
    app.connect("autodoc-process-docstring", _keep_attribute_docstring, priority=100)
    app.connect("autodoc-process-docstring", _restore_attribute_docstring, priority=900)
    app.connect("missing-reference", check_page_reference)
    app.add_directive("cgml-benchmark", BenchmarkTable)
    app.add_directive("cgml-provenance", BenchmarkProvenance)
    app.add_directive("cgml-layers", Layers)
    app.add_directive("cgml-entry-points", EntryPoints)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
