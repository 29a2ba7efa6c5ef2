"""``cgml report DIR``: one self-contained HTML page for any directory the command line writes.

The page (``report.html``) opens offline in any browser: figures are embedded PNGs, styles are inline, and
nothing is fetched and no script runs.  It shows what is in the directory and says what is missing:

- **what was run**: the demo's summary, the steps' YAML configurations, the mapping, the package versions;
- **structure**: every comparison (``comparison.json``) as a table plus its RDF, distribution and density
  figures;
- **dynamics**: the MSD with its local slope and diffusive window, D with errors, alpha, the CG and rescaled
  time axes, and alpha(T);
- **model building**: IBI convergence with the chosen iteration, training and validation loss against the
  baselines, and the stable-timestep scans;
- **speed**: simulated ns per day of the CG and AA runs, and how they were measured;
- **sweeps**: the sample table and the measured alphas.

Numbers carry their diagnostics.  A value that failed a check is flagged (a red "check" mark) in its table and
listed at the top: an unconverged D or alpha, a refused alpha, a run that did not hold its temperature, an IBI
that did not converge, a network no better than its priors, a timestep that failed its drift test, a failed
sweep sample.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ._io import atomic_write_text, package_versions
from .exceptions import ConfigurationError

__all__ = ["write_report", "Report"]

#: figures a directory may hold: (file name, caption saying what good looks like)
FIGURE_CAPTIONS = {
    "rdf.png": "Radial distribution functions, reference and model (shaded: one standard error). Good: the curves "
               "overlap within their bands at every r, the first peak above all.",
    "distributions.png": "Bonded and many-body distributions (probability densities). Good: the model's histograms "
                         "lie on the reference's; the table gives their overlap (1 = identical).",
    "density_msd.png": "Density against time (top left); centre-of-mass MSD with the fitted diffusive windows "
                       "(shaded) and the fits (dashed, top right); the local slope d ln MSD / d ln t, which must sit "
                       "in the grey band (1 ± tolerance) over the fit window (bottom left); the model's MSD on its "
                       "own CG time axis and rescaled by alpha (bottom right). Good: both local slopes reach 1, and "
                       "the rescaled model MSD lies on the reference's.",
    "arrhenius.png": "Arrhenius plot of D against 1000/T with fitted activation energies. Good: parallel lines "
                     "(the same activation energy), so one alpha holds at every temperature.",
    "convergence.png": "IBI: the RDF RMS error per iteration (left), the RDFs of the chosen iteration against the "
                       "targets (middle), the pair potentials (right). Good: the error falls to the noise floor and "
                       "stays there, and the chosen RDFs lie on the targets.",
    "loss_curve.png": "Training and validation force-matching loss per epoch, in (kJ/mol/nm)^2. Good: validation "
                      "loss flattens without rising (no over-fitting) and ends below the priors-only baseline.",
}

#: what writes each section that a directory may lack, for "missing" notes
MAKERS = {"mapping": "cgml map", "ibi": "cgml ibi", "training": "cgml train", "comparison": "cgml compare"}


@dataclass
class Report:
    """The report's content before it is written: sections of HTML, flags, and what was not found."""

    directory: Path
    sections: list[tuple[str, str]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    figures: int = 0

    def write(self, output=None) -> Path:
        """Write the page (atomically) to ``output``, default ``directory/report.html``; returns its path."""
        path = Path(output) if output is not None else self.directory / "report.html"
        atomic_write_text(path, render_html(self))
        return path

    def flag(self, where: str, text: str) -> str:
        """Record a failed check and return its inline mark."""
        self.flags.append(f"{where}: {text}")
        return f'<span class="flag" title="{_e(text)}">check: {_e(text)}</span>'


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _num(value, err=None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e(value)
    text = f"{value:.{digits}g}"
    if err is not None and isinstance(err, (int, float)) and math.isfinite(err) and err > 0:
        text += f" ± {err:.2g}"
    return text


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _embed(report: Report, png: bytes, name: str, caption: str) -> str:
    """A figure of PNG bytes, embedded in the page, with its caption."""
    report.figures += 1
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(name)}">'
            f"<figcaption><b>{_e(name)}</b>. {_e(caption)}</figcaption></figure>")


def _figure(report: Report, path: Path) -> str:
    """A PNG file of the directory (one of :data:`FIGURE_CAPTIONS`), embedded."""
    rel = path.relative_to(report.directory) if path.is_relative_to(report.directory) else path.name
    return _embed(report, path.read_bytes(), str(rel), FIGURE_CAPTIONS.get(path.name, ""))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _matplotlib_figure(report: Report, fig, name: str, caption: str) -> str:
    """A figure drawn here, embedded (and closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _pyplot().close(fig)
    return _embed(report, buf.getvalue(), name, caption)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv_table(rows: list[list[str]]) -> str:
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table><tbody>{body}</tbody></table>"


def _rel(report: Report, path: Path) -> str:
    return str(path.relative_to(report.directory)) if path != report.directory else "."


# ---------------------------------------------------------------------------------------------------------------
# sections


def _row_problem(row: dict) -> str:
    """Why a comparison row fails a check ("" if it passes)."""
    notes = " ".join(str(row.get(k) or "") for k in ("note", "reference_note", "model_note"))
    lowered = notes.lower()
    for marker, text in (("not converged", "not converged"), ("refused", "refused"),
                         ("did not hold", "temperature not held"), ("misses its pressure", "pressure missed")):
        if marker in lowered:
            return text
    if row.get("quantity") == "alpha" and row.get("value") is None:
        return "no alpha"
    return ""


#: comparison rows about dynamics (the rest are structure and thermodynamics)
_DYNAMICS = ("D ", "alpha", "kinetic temperature", "E_a", "Ea", "activation")


def _comparison_sections(report: Report, path: Path, data) -> tuple[str, str]:
    """(structure, dynamics) of one ``comparison.json`` (read as ``data``): its rows split by kind, each with its
    figures."""
    where = _rel(report, path.parent)
    if not isinstance(data, dict) or "rows" not in data:
        return f"<p>{_e(where)}: comparison.json could not be read.</p>", ""
    parts = {"structure": [], "dynamics": []}
    for row in data["rows"]:
        problem = _row_problem(row)
        mark = report.flag(f"{where} {row['quantity']}", problem) if problem else ""
        notes = " ".join(s for s in (row.get("note"), row.get("reference_note"), row.get("model_note")) if s)
        cells = [_e(row["quantity"]), _e(row.get("unit", "")), _num(row.get("reference"), row.get("reference_err")),
                 _num(row.get("model"), row.get("model_err")), _e(row.get("metric", "")),
                 _num(row.get("value"), row.get("value_err")), mark + _e(notes)]
        parts["dynamics" if str(row["quantity"]).startswith(_DYNAMICS) else "structure"].append(cells)
    head = ["quantity", "unit", "reference", "model", "metric", "value", "notes"]
    metrics = data.get("metrics")
    how = ("<details><summary>How each metric is computed</summary><ul>"
           + "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in metrics.items()) + "</ul></details>"
           if isinstance(metrics, dict) else "")
    figures = {kind: "".join(_figure(report, path.parent / name) for name in names if (path.parent / name).is_file())
               for kind, names in (("structure", ("rdf.png", "distributions.png")),
                                   ("dynamics", ("density_msd.png", "arrhenius.png")))}
    structure = (f"<h3>{_e(where)}</h3>" + _table(head, parts["structure"]) + how + figures["structure"]
                 if parts["structure"] else "")
    dynamics = (f"<h3>{_e(where)}</h3>" + _table(head, parts["dynamics"]) + figures["dynamics"]
                if parts["dynamics"] or figures["dynamics"] else "")
    return structure, dynamics


def _ibi_section(report: Report, path: Path, data: dict) -> str:
    where = _rel(report, path.parent)
    converged = data.get("converged")
    mark = "" if converged else report.flag(f"IBI {where}", f"did not converge ({data.get('stop_reason', '?')})")
    history = data.get("history") or []
    best = data.get("best_iteration")
    best_entry = next((h for h in history if h.get("iteration") == best), {}) if isinstance(history, list) else {}
    rows = [["converged", ("yes" if converged else "no") + " " + mark],
            ["stop reason", _e(data.get("stop_reason", ""))],
            ["iterations", _e(len(history))],
            ["chosen iteration", _e(best)]]
    for key in ("error", "pressure_bar", "temperature_K", "noise_ratio"):
        if key in best_entry:
            rows.append([f"{_e(key)} at the chosen iteration", _num(best_entry[key])])
    out = [f"<h3>IBI: {_e(where)}</h3>", _kv_table(rows)]
    if (path.parent / "convergence.png").is_file():
        out.append(_figure(report, path.parent / "convergence.png"))
    return "\n".join(out)


def _training_section(report: Report, path: Path) -> str:
    where = _rel(report, path.parent)
    out = [f"<h3>Training: {_e(where)}</h3>"]
    summary = _read_json(path.parent / "training_summary.json")
    if isinstance(summary, dict):
        val, base = summary.get("validation") or {}, summary.get("baselines") or {}
        margin = base.get("prior_margin") or {}
        rows = [["validation force MSE", _num(val.get("mse"))], ["zero-force MSE", _num(base.get("zero_force_mse"))]]
        if "prior_only_mse" in base:
            mark = "" if margin.get("beats_priors", True) else report.flag(
                f"training {where}", "no better than its priors")
            rows.append(["priors-only MSE", _num(base["prior_only_mse"]) + " " + mark])
            if "relative_improvement" in margin:
                rows.append(["improvement over the priors", f"{100 * margin['relative_improvement']:.2f} % ± "
                             f"{100 * margin.get('relative_improvement_err', float('nan')):.2f} %"])
        noise = base.get("force_noise") or {}
        if "noise_fraction" in noise:
            rows.append(["noise fraction of the mapped forces (lower bound)",
                         f"{100 * noise['noise_fraction']:.0f} % ± {100 * noise.get('noise_fraction_err', 0):.0f} %"])
        rows.append(["best epoch", _e(summary.get("best_epoch"))])
        out.append(_kv_table(rows))
    else:
        out.append("<p>No training_summary.json here (written by cgml train since 0.2.0): the baselines are not "
                   "shown.</p>")
    if (path.parent / "loss_curve.png").is_file():
        out.append(_figure(report, path.parent / "loss_curve.png"))
    return "\n".join(out)


def _scan_section(report: Report, path: Path) -> str:
    data = _read_json(path) or {}
    name = path.stem.replace("_timestep_scan", "") or "run"
    rows = []
    for label, trial in (data.get("trials") or {}).items():
        stable = trial.get("stable")
        mark = "" if stable else "(rejected)"
        drift = trial.get("energy_drift_kT_per_ns_per_dof")
        rows.append([_e(label), ("stable" if stable else "unstable ") + mark,
                     _num(drift, trial.get("energy_drift_error")), _num(trial.get("mean_temperature_K"))])
    limit = data.get("max_drift_kT_per_ns_per_dof")
    if data.get("largest_stable_fs") is None:
        rows.append(["", report.flag(f"timestep scan {name}", "no trial timestep passed the drift test"), "", ""])
    return (f"<h3>Stable-timestep scan: {_e(name)}</h3><p>NVE energy drift per trial timestep; a timestep is "
            f"stable when |drift| &le; {_num(limit)} kT/ns per degree of freedom. Largest stable: "
            f"{_num(data.get('largest_stable_fs'))} fs.</p>"
            + _table(["timestep", "result", "drift (kT/ns/dof)", "mean T (K)"], rows))


def _summary_section(report: Report, data: dict) -> tuple[str, str]:
    """(what was run, speed) from the demo's summary.json."""
    aa, cg, nn = data.get("aa") or {}, data.get("cg") or {}, data.get("neural") or {}
    run = [["system", _e(data.get("system", ""))], ["quick (smoke test)", _e(data.get("quick", ""))]]
    if aa:
        run.append(["AA density (g/cm³)", _num(aa.get("density_g_cm3"), aa.get("density_std_g_cm3")) + " (sd)"])
    for label, part in (("IBI model", cg), ("neural model", nn)):
        if part:
            thermo = part.get("thermostat") or {}
            run.append([f"{label}: timestep, thermostat", f"{_num(part.get('timestep_fs'))} fs, "
                        f"{_e(thermo.get('kind', '?'))} (tau {_num(thermo.get('tau_ps'))} ps)"])
            drift = part.get("energy_drift_kT_per_ns_per_dof")
            if drift is not None:
                run.append([f"{label}: NVE energy drift (kT/ns/dof)", _num(drift)])
    timed = [(label, part) for label, part in (("AA reference", aa), ("IBI model", cg), ("neural model", nn))
             if part.get("ns_per_day")]
    speed_rows = [[label, _num(part["ns_per_day"]), _num(part.get("speedup_vs_aa_ns_per_day"))] for label, part in timed]
    speed = ""
    if timed:
        speed = ("<p>Simulated ns per day of each production run as the demo measured it (wall clock of that run on "
                 "this machine, one after the other, not interleaved: a rough guide; the interleaved benchmarks are "
                 "in benchmarks/results).</p>" + _table(["run", "ns/day", "x AA"], speed_rows))
        fig, ax = _pyplot().subplots(figsize=(5, 2.6))
        ax.barh([label for label, _ in timed], [float(part["ns_per_day"]) for _, part in timed],
                color=["C0", "C1", "C2"][: len(timed)])
        ax.set(xscale="log", xlabel="simulated time per day (ns/day)")
        fig.tight_layout()
        speed += _matplotlib_figure(report, fig, "speed", "Simulated nanoseconds per day of each run (log scale). "
                                    "Good: the CG models far to the right of the AA reference.")
    return _kv_table(run), speed


def _mapping_section(path: Path) -> str:
    data = _read_json(path) or {}
    rows = []
    for mol in data.get("molecule_types", []) if isinstance(data, dict) else []:
        elements = mol.get("elements") or []
        for name, btype, atoms in zip(mol.get("bead_names", []), mol.get("bead_types", []), mol.get("beads", [])):
            heavy = [f"{elements[i]}{i}" for i in atoms if i < len(elements) and elements[i] != "H"]
            rows.append([_e(mol.get("name", "")), _e(name), _e(btype),
                         _e(f"{len(atoms)} atoms; heavy: {', '.join(heavy)}")])
    if not rows:
        return f"<details><summary>{_e(path.name)}</summary><pre>{_e(path.read_text()[:20000])}</pre></details>"
    return _table(["molecule", "bead", "type", "atoms (element + index in the molecule)"], rows)


def _sweep_section(report: Report, path: Path) -> str:
    where = _rel(report, path.parent)
    with open(path, newline="") as fh:
        samples = list(csv.DictReader(fh))
    done = [s for s in samples if s.get("status") == "done"]
    failed = [s for s in samples if s.get("status") not in ("done", None)]
    out = [f"<h3>Sweep: {_e(where)}</h3>",
           f"<p>{len(samples)} samples: {len(done)} done, {len(failed)} not done.</p>"]
    for s in failed:
        report.flag(f"sweep {where} {s.get('sample_id')}", f"{s.get('status')}: {s.get('error_type') or ''}")
    alphas = [(float(s["alpha"]), float(s.get("alpha_err") or "nan"), s.get("alpha_converged") == "True")
              for s in done if s.get("alpha") not in (None, "", "nan")]
    unconverged = sum(1 for a in alphas if not a[2])
    if unconverged:
        out.append("<p>" + report.flag(f"sweep {where}", f"{unconverged} alpha(s) not converged") + "</p>")
    if alphas:
        fig, ax = _pyplot().subplots(figsize=(5.5, 3))
        ax.hist([a for a, _, ok in alphas if ok], bins=20, color="C0", label="converged")
        if unconverged:
            ax.hist([a for a, _, ok in alphas if not ok], bins=20, color="C3", alpha=0.6, label="not converged")
        ax.set(xlabel="alpha = D_CG / D_AA (1)", ylabel="samples (count)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        out.append(_matplotlib_figure(report, fig, f"{where}: alpha", "The acceleration factor of every finished "
                                      "sample. Good: all converged; the spread is what the learned alpha must "
                                      "explain."))
    head = ["sample", "status", "alpha", "D_AA (nm²/ps)", "D_CG (nm²/ps)", "IBI RDF error"]
    rows = [[_e(s.get("sample_id", "")), _e(s.get("status", "")),
             _num(_f(s.get("alpha")), _f(s.get("alpha_err"))), _num(_f(s.get("D_AA")), _f(s.get("D_AA_err"))),
             _num(_f(s.get("D_CG")), _f(s.get("D_CG_err"))), _num(_f(s.get("ibi_rdf_error")))] for s in samples[:200]]
    out.append(f"<details><summary>the samples ({len(samples)}{', first 200' if len(samples) > 200 else ''})"
               f"</summary>{_table(head, rows)}</details>")
    return "\n".join(out)


def _f(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _reference_section(report: Report, path: Path) -> str:
    from .dataset import open_dataset

    try:
        ds = open_dataset(path)
    except Exception as exc:  # a damaged or foreign file is reported, not fatal to the report
        return f"<p>{_e(_rel(report, path))}: not readable as a dataset ({_e(exc)}).</p>"
    meta = ds.metadata
    thermo = meta.get("thermostat") or {}
    rows = [["frames", _e(ds.n_frames)], ["particles", _e(ds.n_particles)],
            ["temperature (K)", _num(meta.get("temperature_K"))],
            ["thermostat", _e(thermo.get("kind", "")) + (f" (tau {_num(thermo.get('tau_ps'))} ps)"
                                                        if thermo.get("tau_ps") else "")]]
    check = meta.get("temperature_check")
    if isinstance(check, dict) and check.get("mean_temperature_K") is not None:
        mark = "" if check.get("held", True) else report.flag(f"{_rel(report, path)}", "temperature not held")
        rows.append(["mean kinetic temperature (K)", _num(check["mean_temperature_K"], check.get("temperature_sem_K"))
                     + " " + mark])
    return f"<h3>{_e(_rel(report, path))}</h3>" + _kv_table(rows)


# ---------------------------------------------------------------------------------------------------------------


def _find(directory: Path, pattern: str, depth: int = 2) -> list[Path]:
    found = []
    for level in range(depth + 1):
        found += sorted(directory.glob("/".join(["*"] * level + [pattern])))
    return found


def build_report(directory) -> Report:
    """Read every artefact the command line writes under ``directory`` (two levels deep)."""
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise ConfigurationError(f"cgml report: {directory} is not a directory (expected a workflow output "
                                 "directory: a demo output, or what cgml reference/map/ibi/train/compare/sweep wrote)")
    report = Report(directory)
    summary = _read_json(directory / "summary.json")
    convergence = {p: _read_json(p) or {} for p in _find(directory, "convergence.json")}
    ibis = {p: d for p, d in convergence.items() if d.get("history") is not None}  # IBI's (not other logs)
    compared = {p: _read_json(p) for p in _find(directory, "comparison.json")}
    trainings = _find(directory, "loss_curve.json")
    scans = _find(directory, "*_timestep_scan.json", depth=0)
    sweeps = _find(directory, "index.csv", depth=1)
    mappings = _find(directory, "mapping.json", depth=1)
    datasets = _find(directory, "*.h5", depth=0)
    configs = _find(directory, "*.yaml", depth=1)

    run = []
    speed = ""
    if isinstance(summary, dict):
        table, speed = _summary_section(report, summary)
        run.append(table)
    if mappings:
        run.append("<h3>Mapping</h3>" + "".join(_mapping_section(p) for p in mappings))
    else:
        report.missing.append(f"mapping ({MAKERS['mapping']})")
    if configs:
        run.append("<h3>Configurations</h3>" + "".join(
            f"<details><summary>{_e(_rel(report, p))}</summary><pre>{_e(p.read_text()[:20000])}</pre></details>"
            for p in configs))
    versions = None
    for data in [*compared.values(), *ibis.values()]:
        versions = (data or {}).get("package_versions") or versions
    versions = versions or package_versions()
    run.append("<h3>Package versions</h3>" + _table(["package", "version"],
                                                    [[_e(k), _e(v)] for k, v in versions.items()]))
    report.sections.append(("What was run", "\n".join(run)))

    if datasets:
        report.sections.append(("Datasets", "\n".join(_reference_section(report, p) for p in datasets)))
    if compared:
        split = [_comparison_sections(report, p, data) for p, data in compared.items()]
        report.sections.append(("Structure", "<p>Each comparison against its reference: RDFs (rms difference), "
                                "bonded and many-body distributions (overlap), density and pressure.</p>"
                                + "\n".join(s for s, _ in split)))
        report.sections.append(("Dynamics", "<p>Diffusion of the molecular centres of mass and alpha = D_model / "
                                "D_reference. Each D row names the thermostat, the error method and whether the MSD "
                                "reached the diffusive regime; each alpha row says whether it is converged and "
                                "finite-size corrected.</p>" + "\n".join(d for _, d in split)))
    else:
        report.missing.append(f"structure and dynamics against a reference ({MAKERS['comparison']})")
    building = [_ibi_section(report, p, d) for p, d in ibis.items()]
    building += [_training_section(report, p) for p in trainings]
    building += [_scan_section(report, p) for p in scans]
    if building:
        report.sections.append(("Model building", "\n".join(building)))
    if not ibis:
        report.missing.append(f"IBI convergence ({MAKERS['ibi']})")
    if not trainings:
        report.missing.append(f"neural training ({MAKERS['training']})")
    if speed:
        report.sections.append(("Speed", speed))
    if sweeps:
        report.sections.append(("Parameter sweeps", "\n".join(_sweep_section(report, p) for p in sweeps)))
    return report


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #444; }
.flag { color: #fff; background: #b00020; padding: 0 0.3em; border-radius: 3px; font-size: 0.85em; }
.ok { color: #1b5e20; }
pre { background: #f7f7f7; padding: 0.5em; overflow-x: auto; font-size: 0.8em; }
"""


def render_html(report: Report) -> str:
    from . import __version__

    checks = ("<p class=\"ok\">No failed checks.</p>" if not report.flags else
              "<ul>" + "".join(f'<li><span class="flag">check</span> {_e(f)}</li>' for f in report.flags) + "</ul>")
    missing = ("" if not report.missing else "<h2>Not in this directory</h2><ul>"
               + "".join(f"<li>{_e(m)}</li>" for m in report.missing) + "</ul>")
    toc = "".join(f'<li><a href="#s{i}">{_e(title)}</a></li>' for i, (title, _) in enumerate(report.sections))
    body = "\n".join(f'<section id="s{i}"><h2>{_e(title)}</h2>\n{content}</section>'
                     for i, (title, content) in enumerate(report.sections))
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>openmm_cgml report: {_e(report.directory.name)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>openmm_cgml report: {_e(report.directory.name)}</h1>\n"
            f"<p>{_e(report.directory)}; written by openmm_cgml {_e(__version__)}.</p>\n"
            f"<h2>Checks</h2>\n{checks}\n{missing}\n<nav><ul>{toc}</ul></nav>\n{body}\n</body>\n</html>\n")


def write_report(directory, output=None) -> Path:
    """Write ``report.html`` (or ``output``) for the workflow directory ``directory``; returns its path."""
    return build_report(directory).write(output)
