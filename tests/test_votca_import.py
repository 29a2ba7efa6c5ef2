"""``cgml import``: a VOTCA/GROMACS IBI setup (the layout of VOTCA's hexane tutorial, ``ibi_all``) goes through
``cgml import`` and ``cgml ibi`` with no hand-written Python.

The test writes a small copy of that layout itself: trimers A-B-A of a known CG model (tabulated pairs, harmonic
bond and angle) simulated in OpenMM give the targets (``A-A.dist.tgt`` ... up to each pair's own ``max``,
``bond.dist.tgt``, ``angle.dist.tgt``); ``conf.gro`` and ``topol.top`` hold the structure with tabulated bonded
items (function 8, table 1) as VOTCA's tutorial does; ``settings.xml`` has VOTCA's structure and options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from openmm_cgml.cli import main
from openmm_cgml.exceptions import ConfigurationError
from openmm_cgml.workflows.votca import import_votca, read_gro, read_top, read_votca_settings

N_MOL, BOX = 60, 3.3
MAX = {"A-A": 1.2, "B-B": 1.1, "A-B": 1.05}
R0, K_BOND, THETA0, K_ANGLE = 0.30, 3000.0, 2.2, 40.0


def _known():
    from openmm_cgml.forces.bonded import HarmonicAngles, HarmonicBonds
    from openmm_cgml.forces.tabulated import TabulatedPairPotential
    from openmm_cgml.potential import CGPotential
    from openmm_cgml.topology import CGTopology

    types = ["A", "B", "A"] * N_MOL
    topology = CGTopology(bead_types=tuple(types), molecule_index=np.repeat(np.arange(N_MOL), 3),
                          bonds=np.array([[3 * m + i, 3 * m + i + 1] for m in range(N_MOL) for i in range(2)]),
                          masses=np.where(np.array(types) == "A", 29.06, 28.05), box_vectors=np.eye(3) * BOX,
                          bead_names=tuple(["A1", "B", "A2"] * N_MOL))
    r = np.linspace(0.05, 1.2, 231)

    def lj(s, e, rc):
        u = 4 * e * ((s / r) ** 12 - (s / r) ** 6)
        u = np.where(r < rc, u - 4 * e * ((s / rc) ** 12 - (s / rc) ** 6), 0.0)
        return np.minimum(u, 400.0)

    pair = TabulatedPairPotential({"A-A": (r, lj(0.42, 1.6, MAX["A-A"])), "B-B": (r, lj(0.40, 1.2, MAX["B-B"])),
                                   "A-B": (r, lj(0.41, 1.4, MAX["A-B"]))}, cutoff=1.2)
    return topology, CGPotential([pair, HarmonicBonds({"A-B": {"r0": R0, "k": K_BOND}}),
                                  HarmonicAngles({"A-B-A": {"theta0": THETA0, "k": K_ANGLE}})])


@pytest.fixture(scope="module")
def votca_layout(tmp_path_factory):
    """The tutorial's file layout, with targets from the known model (100 frames of a 300 K run)."""
    import openmm
    from openmm import unit

    from openmm_cgml.analysis.distributions import compute_angles, compute_bonds
    from openmm_cgml.analysis.rdf import compute_rdf
    from openmm_cgml.export import write_gro
    from openmm_cgml.ibi import write_votca_distribution

    d = tmp_path_factory.mktemp("votca")
    topology, potential = _known()
    g = int(np.ceil(N_MOL ** (1 / 3)))
    start = []
    for k in range(N_MOL):
        c = (np.array([k % g, (k // g) % g, k // g**2]) + 0.5) * BOX / g
        start += [c + [-0.28, 0, 0], c, c + [0.2, 0.2, 0.0]]
    integrator = openmm.LangevinMiddleIntegrator(300, 5, 0.005)
    integrator.setRandomNumberSeed(11)  # not 0, which OpenMM replaces by a random seed
    ctx = openmm.Context(potential.createSystem(topology), integrator, openmm.Platform.getPlatformByName("CPU"),
                         {"Threads": "1"})
    ctx.setPositions(np.array(start))
    openmm.LocalEnergyMinimizer.minimize(ctx, 10, 300)
    ctx.getIntegrator().step(4000)
    frames = []
    for _ in range(100):
        ctx.getIntegrator().step(200)
        frames.append(ctx.getState(getPositions=True, enforcePeriodicBox=True).getPositions(asNumpy=True)
                      .value_in_unit(unit.nanometer))
    frames = np.array(frames)
    for key, rmax in MAX.items():
        a, b = key.split("-")
        rdf = compute_rdf(frames, topology.box_vectors, topology.bead_types, molecule_index=topology.molecule_index,
                          pairs=[(a, b)], r_max=rmax, n_bins=int(round(rmax / 0.01)), kind="inter")[(a, b)]
        write_votca_distribution(d / f"{key}.dist.tgt", rdf.r, rdf.g)
    for name, values, lo, hi in (("bond", compute_bonds(frames, topology.bonds, topology.box_vectors), 0.2, 0.4),
                                 ("angle", compute_angles(frames, topology.angles, topology.box_vectors), 1.2, 3.1)):
        hist, edges = np.histogram(values.ravel(), bins=100, range=(lo, hi), density=True)
        write_votca_distribution(d / f"{name}.dist.tgt", 0.5 * (edges[1:] + edges[:-1]), hist)
    write_gro(d / "conf.gro", frames[-1:], [topology.box_vectors], topology, title="what a nice title")
    (d / "topol.top").write_text(
        "[ defaults ]\n  1 1 no 0.0 0.0\n\n[ atomtypes ]\n;type mass charge ptype sigma epsilon\n"
        " B 14.027 0.000 A 1.0 1.0\n A 15.035 0.000 A 1.0 1.0\n\n[ moleculetype ]\nhexane 3\n\n[ atoms ]\n"
        "  1 A 1 hex A1 1 0 29.06\n  2 B 1 hex B 2 0 28.05\n  3 A 1 hex A2 3 0 29.06\n\n"
        "[ bonds ]\n  1 2 8 1 1.0\n  2 3 8 1 1.0\n\n[ angles ]\n  1 2 3 8 1 1.0\n\n"
        f"[ system ]\ncg hexane\n\n[ molecules ]\nhexane {N_MOL}\n")
    pairs = "".join(
        f"<non-bonded><name>{k}</name><type1>{k.split('-')[0]}</type1><type2>{k.split('-')[1]}</type2><min>0</min>"
        f"<max>{v}</max><step>0.01</step><inverse><target>{k}.dist.tgt</target><do_potential>1 0 0</do_potential>"
        f"<post_update></post_update><post_add>convergence</post_add><gromacs><table>table_{k.replace('-', '_')}.xvg"
        "</table></gromacs></inverse></non-bonded>\n" for k, v in MAX.items())
    bonded = "".join(
        f"<bonded><name>{n}</name><min>{lo}</min><max>{hi}</max><step>0.002</step><inverse><target>{n}.dist.tgt"
        f"</target><gromacs><table>{t}</table></gromacs></inverse></bonded>\n"
        for n, lo, hi, t in (("bond", 0.2, 0.4, "table_b1.xvg"), ("angle", 1.2, 3.1, "table_a1.xvg")))
    (d / "settings.xml").write_text(
        f"<cg>\n{bonded}{pairs}<inverse><kBT>2.49435</kBT><program>gromacs</program><gromacs><equi_time>2"
        "</equi_time><table_bins>0.002</table_bins><pot_max>1000000</pot_max><table_end>2.5</table_end></gromacs>"
        "<map>hexane_cg.xml</map><filelist>grompp.mdp topol.top table.xvg index.ndx</filelist>"
        "<iterations_max>6</iterations_max><convergence_check><type>default</type><limit>0.001</limit>"
        "</convergence_check><method>ibi</method><log_file>inverse.log</log_file></inverse>\n</cg>\n")
    (d / "grompp.mdp").write_text("integrator = sd\ndt = 0.005\nref_t = 300\ntau_t = 1.0\n")
    return d, topology


def test_the_readers_parse_the_tutorial_formats(votca_layout):
    d, topology = votca_layout
    names, resnums, pos, box = read_gro(d / "conf.gro")
    assert len(names) == topology.n_beads and names[:3] == ["A1", "B", "A2"] and resnums[3] == 2
    np.testing.assert_allclose(box, np.eye(3) * BOX)
    top = read_top(d / "topol.top")
    assert top.atomtypes == {"B": 14.027, "A": 15.035} and top.molecules == [("hexane", N_MOL)]
    assert [b["params"] for b in top.moleculetypes["hexane"]["bond"]] == [["1", "1.0"], ["1", "1.0"]]
    settings = read_votca_settings(d / "settings.xml")
    assert [e["name"] for e in settings.non_bonded] == ["A-A", "B-B", "A-B"]
    assert settings.inverse["kBT"] == "2.49435" and settings.inverse["convergence_check.limit"] == "0.001"
    bad = d / "bad.top"
    bad.write_text('#include "forcefield.itp"\n')
    with pytest.raises(ConfigurationError, match="preprocessor lines.*gmx grompp -pp"):
        read_top(bad)


@pytest.mark.slow
def test_import_then_ibi_with_no_python(votca_layout, tmp_path, capsys):
    d, topology = votca_layout
    out = tmp_path / "imported"
    assert main(["import", str(d / "settings.xml"), "--gro", str(d / "conf.gro"), "--top", str(d / "topol.top"),
                 "--mdp", str(d / "grompp.mdp"), "-o", str(out), "--production-steps", "2000"]) == 0
    assert "Next: cgml ibi" in capsys.readouterr().out
    config = yaml.safe_load((out / "ibi.yaml").read_text())
    assert config["cutoff"] == "1.2 nm" and config["pair_cutoffs"] == {"B-B": "1.1 nm", "A-B": "1.05 nm"}
    assert config["temperature"].startswith("300") and config["timestep"] == "5 fs" and config["max_iterations"] == 6
    assert set(config["bonded_targets"]) == {"A-B", "A-B-A"} and config["refine_bonded"] is True
    report = (out / "import.md").read_text()
    assert "do_potential | 1 0 0 | not carried over" in report and "convergence_check.limit" in report
    # the IBI runs from the imported files alone (a few short iterations)
    config.update(max_iterations=4, equilibration_steps=500, patience=None)
    (out / "short.yaml").write_text(yaml.safe_dump(config))
    assert main(["ibi", str(out / "short.yaml")]) == 0
    from openmm_cgml.potential import CGPotential

    log = yaml.safe_load((out / "ibi" / "convergence.json").read_text())
    errors = [h["error"] for h in log["history"]]
    assert min(errors[1:]) < errors[0]  # IBI improves on its PMF start
    pair, *bonded = CGPotential(out / "ibi").terms
    # each pair honours its own cutoff: zero beyond it
    for key in ("B-B", "A-B"):  # A-A has the largest, the global cutoff
        rc = MAX[key]
        a, b = key.split("-")
        beyond = np.linspace(rc + 0.005, 1.19, 20)
        # zero on the table beyond it (what OpenMM's spline makes of the taper's end: below 1e-3 kJ/mol)
        assert np.all(np.abs(pair.energy(a, b, beyond)) < 1e-3), key
        assert np.abs(pair.energy(a, b, np.array([rc - 0.3]))).max() > 1e-2
    # the bonded terms came from the VOTCA bonded targets: minima where the known model has them
    bond = next(t for t in bonded if t.bonded == "bond")
    x = np.linspace(0.25, 0.35, 201)
    (xs, us), = bond.tables.values()
    assert abs(x[np.argmin(np.interp(x, xs, us))] - R0) < 0.01
    angle = next(t for t in bonded if t.bonded == "angle")
    th = np.linspace(1.8, 2.6, 161)
    (xs, us), = angle.tables.values()
    assert abs(th[np.argmin(np.interp(th, xs, us))] - THETA0) < 0.08
    overlaps = log["history"][-1]["bonded_overlap"]
    assert min(overlaps.values()) > 0.8, overlaps


def test_import_refuses_what_it_cannot_carry(votca_layout, tmp_path):
    d, _ = votca_layout
    text = (d / "settings.xml").read_text()
    broken = tmp_path / "settings.xml"
    for target in ("A-A", "B-B", "A-B", "bond", "angle"):
        (tmp_path / f"{target}.dist.tgt").write_text((d / f"{target}.dist.tgt").read_text())
    broken.write_text(text.replace("<type2>B</type2>", "<type2>C</type2>", 1))
    with pytest.raises(ConfigurationError, match="types .*'C'.*bead types are"):
        import_votca(broken, d / "conf.gro", d / "topol.top", tmp_path / "o")
    broken.write_text(text.replace("table_b1.xvg", "table_b2.xvg"))
    with pytest.raises(ConfigurationError, match="no bond with function 8 and table 2"):
        import_votca(broken, d / "conf.gro", d / "topol.top", tmp_path / "o")
    broken.write_text(text.replace("<kBT>2.49435</kBT>", ""))
    with pytest.raises(ConfigurationError, match="kBT"):
        import_votca(broken, d / "conf.gro", d / "topol.top", tmp_path / "o")
    assert not (tmp_path / "o").exists()  # refused before anything was written
    Path(tmp_path / "A-B.dist.tgt").unlink()
    broken.write_text(text)
    with pytest.raises(ConfigurationError, match="target 'A-B.dist.tgt'"):
        import_votca(broken, d / "conf.gro", d / "topol.top", tmp_path / "o")


def test_pair_cutoffs_are_checked():
    from openmm_cgml.ibi import IBISettings

    base = {"temperature": "300 K", "cutoff": "1.2 nm"}
    assert IBISettings.from_data({**base, "pair_cutoffs": {"B-A": "1.0 nm"}}).pair_cutoff(("A", "B")) == 1.0
    assert IBISettings.from_data(base).pair_cutoff("A-A") == 1.2
    with pytest.raises(ConfigurationError, match="not exceed cutoff"):
        IBISettings.from_data({**base, "pair_cutoffs": {"A-B": "1.3 nm"}})
    with pytest.raises(ConfigurationError, match="bead-type pairs 'A-B'"):
        IBISettings.from_data({**base, "pair_cutoffs": {"A-B-C": "1.0 nm"}})
