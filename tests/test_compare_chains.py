"""``compare_runs`` chain rows: Rg^2, Ree^2, the Rg distributions and the end-to-end relaxation of molecules that are
linear chains, checked against ideal (freely jointed) random walks whose sizes are known exactly."""

import numpy as np
import pytest
from openmm import app

from openmm_cgml.analysis import compare_runs
from openmm_cgml.analysis.compare import chain_molecules
from openmm_cgml.dataset import TrajectoryWriter, open_dataset

L, N_CHAINS, N_BEADS, N_FRAMES = 4.0, 100, 8, 100


def _ideal(n_bonds: int, b: float) -> tuple[float, float]:
    """<Rg^2> and <Ree^2> of a random walk of n_bonds independent bonds of mean square length b^2 (equal masses)."""
    return b**2 * n_bonds * (n_bonds + 2) / (6 * (n_bonds + 1)), b**2 * n_bonds


def _walks(rng, n_chains: int, n_beads: int, b: float) -> np.ndarray:
    """Freely jointed chains (bonds of length b in random directions), each from a random point of the box."""
    u = rng.normal(size=(n_chains, n_beads - 1, 3))
    u *= b / np.linalg.norm(u, axis=-1, keepdims=True)
    start = rng.uniform(0, L, (n_chains, 1, 3))
    return np.concatenate([start, start + np.cumsum(u, axis=1)], axis=1)


def _topology(n_chains: int, n_beads: int, *, star: bool = False, residue: str = "PLY") -> app.Topology:
    top = app.Topology()
    chain = top.addChain()
    for _ in range(n_chains):
        res = top.addResidue(residue, chain)
        atoms = [top.addAtom("A", None, res) for _ in range(n_beads)]
        pairs = [(0, k) for k in range(1, n_beads)] if star else [(k, k + 1) for k in range(n_beads - 1)]
        for i, j in pairs:
            top.addBond(atoms[i], atoms[j])
    return top


def _write(path, b: float, seed: int, *, n_beads: int = N_BEADS, n_chains: int = N_CHAINS, frozen: bool = False,
           star: bool = False):
    """Chains redrawn independently every frame (relaxed at once), or ``frozen``: one conformation per chain that
    only moves as a whole (and rattles by 0.005 nm), so that its end-to-end vector never decorrelates."""
    rng = np.random.default_rng(seed)
    fixed = _walks(rng, n_chains, n_beads, b)
    meta = {"temperature_K": 300.0, "thermostat": {"kind": "nose-hoover", "tau_ps": 0.5, "temperature_K": 300.0}}
    with TrajectoryWriter(path, _topology(n_chains, n_beads, star=star), np.full(n_chains * n_beads, 14.0), meta,
                          fields=("positions",), kind="coarse-grained") as w:
        for k in range(N_FRAMES):
            if frozen:
                x = fixed + rng.uniform(0, L, (n_chains, 1, 3)) + rng.normal(scale=0.005, size=fixed.shape)
            else:
                x = _walks(rng, n_chains, n_beads, b)
            w.append(positions=x.reshape(-1, 3) % L, box=np.eye(3) * L, step=k * 100, time=float(k))
    return open_dataset(path)


def _chain_rows(comparison) -> dict:
    keys = ("Rg^2", "Ree^2", "Rg distribution", "end-to-end relaxation tau")
    return {r.quantity.split(" (")[0]: r for r in comparison.rows if r.quantity.startswith(keys)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("chains")
    return {"ref": _write(base / "ref.h5", 0.30, 1), "same": _write(base / "same.h5", 0.30, 2),
            "long": _write(base / "long.h5", 0.36, 3), "frozen": _write(base / "frozen.h5", 0.30, 4, frozen=True)}


def test_chain_sizes_match_ideal_random_walks_and_the_difference_has_the_right_sign(runs):
    """Reference bonds 0.30 nm, model 0.36 nm: <Rg^2> = b^2 N (N + 2) / (6 (N + 1)) and <Ree^2> = N b^2 on each
    side within 3 standard errors, and model - reference is positive, as predicted, and resolved."""
    comparison = compare_runs(runs["ref"], runs["long"], r_max=1.2)
    rows = _chain_rows(comparison)
    assert set(rows) == {"Rg^2", "Ree^2", "Rg distribution", "end-to-end relaxation tau"}
    assert all(f"PLY, {N_BEADS} beads" in r.quantity for r in rows.values())
    for name, k in (("Rg^2", 0), ("Ree^2", 1)):
        row = rows[name]
        want_ref, want_mod = _ideal(N_BEADS - 1, 0.30)[k], _ideal(N_BEADS - 1, 0.36)[k]
        assert row.unit == "nm**2" and row.metric == "model - reference"
        assert 0 < row.reference_err < 0.05 * want_ref and 0 < row.model_err < 0.05 * want_mod
        assert abs(row.reference - want_ref) < 3 * row.reference_err, (name, row.reference, want_ref)
        assert abs(row.model - want_mod) < 3 * row.model_err, (name, row.model, want_mod)
        assert row.value == pytest.approx(row.model - row.reference)
        assert row.value_err == pytest.approx(np.hypot(row.reference_err, row.model_err))
        assert row.value > 3 * row.value_err and abs(row.value - (want_mod - want_ref)) < 3 * row.value_err
    overlap = rows["Rg distribution"]
    assert overlap.metric == "overlap" and overlap.unit == "nm" and 0 < overlap.value_err < 0.05
    assert overlap.value < 0.85 and overlap.model > overlap.reference  # mean Rg
    p, q = comparison.distributions[("Rg", f"PLY, {N_BEADS} beads")]
    np.testing.assert_allclose(p.edges, q.edges)
    tau = rows["end-to-end relaxation tau"]
    # chains redrawn every frame: both decorrelate within one frame (1 ps), tau from the integral to the first zero
    assert tau.unit == "ps" and 0 < tau.reference < 1.0 and 0 < tau.model < 1.0
    assert np.isfinite(tau.value) and "not relaxed" not in tau.note and "decayed below" in tau.reference_note


def test_identical_chains_overlap_and_agree_within_errors(runs):
    """Two independent samples of the same chains: the Rg distributions overlap (to within their sampling noise)
    and the size differences are within 3 errors of 0; a run compared with itself gives exactly 1 and 0."""
    rows = _chain_rows(compare_runs(runs["ref"], runs["same"], r_max=1.2))
    for name in ("Rg^2", "Ree^2"):
        assert abs(rows[name].value) < 3 * rows[name].value_err, (name, rows[name].value, rows[name].value_err)
    overlap = rows["Rg distribution"]
    assert overlap.value > 0.9 and overlap.value + 3 * overlap.value_err > 0.95
    assert overlap.value > _chain_rows(compare_runs(runs["ref"], runs["long"], r_max=1.2))["Rg distribution"].value
    itself = _chain_rows(compare_runs(runs["ref"], runs["ref"], r_max=1.2))
    assert itself["Rg distribution"].value == pytest.approx(1.0) and itself["Rg^2"].value == 0.0
    assert itself["end-to-end relaxation tau"].value == pytest.approx(1.0)


def test_an_unrelaxed_reference_is_flagged(runs, caplog):
    """A reference whose chains keep one conformation (they only translate): its end-to-end autocorrelation stays
    at 1, so the relaxation row gives no ratio and says the reference is not relaxed; the table carries it."""
    with caplog.at_level("WARNING"):
        comparison = compare_runs(runs["frozen"], runs["same"], r_max=1.2)
    tau = _chain_rows(comparison)["end-to-end relaxation tau"]
    assert "the reference is not relaxed" in tau.note and "lower bound" in tau.note
    assert "has not decayed" in tau.reference_note and "decayed below" in tau.model_note
    assert np.isnan(tau.value) and tau.reference > 10.0  # ~ the longest lag (half the 99 ps run): C stays ~1
    assert "the reference is not relaxed" in caplog.text
    assert "reference is not relaxed" in comparison.to_markdown()
    entry = next(e for e in comparison.to_data() if e["quantity"].startswith("end-to-end relaxation"))
    assert entry["value"] is None and "not relaxed" in entry["note"]
    # the other way round the model is the one flagged
    flipped = _chain_rows(compare_runs(runs["same"], runs["frozen"], r_max=1.2))["end-to-end relaxation tau"]
    assert "the model is not relaxed" in flipped.note and "reference is not relaxed" not in flipped.note


def test_short_and_branched_molecules_get_no_chain_rows(tmp_path):
    """Three-bead molecules (as the TMP demo's) and four-bead stars (a bead with three neighbours) are not chains:
    no chain rows, and the rest of the table is as before."""
    short = [_write(tmp_path / f"short{k}.h5", 0.3, k, n_beads=3, n_chains=60) for k in range(2)]
    star = [_write(tmp_path / f"star{k}.h5", 0.3, 10 + k, n_beads=4, n_chains=60, star=True) for k in range(2)]
    for a, b in (short, star):
        assert chain_molecules(a) == {}
        comparison = compare_runs(a, b, r_max=1.2)
        assert not _chain_rows(comparison) and not any(k[0] == "Rg" for k in comparison.distributions)
        assert {"g(COM-COM)", "bond A-A", "density"} <= {r.quantity for r in comparison.rows}


def test_chain_molecules_finds_the_bond_order(tmp_path):
    """Chains come back in bond order whatever the particle order inside the molecule."""
    top = app.Topology()
    chain = top.addChain()
    res = top.addResidue("PLY", chain)
    atoms = [top.addAtom("A", None, res) for _ in range(5)]
    for i, j in ((3, 0), (0, 4), (4, 1), (1, 2)):  # the path 3-0-4-1-2
        top.addBond(atoms[i], atoms[j])
    res = top.addResidue("RING", chain)
    ring = [top.addAtom("A", None, res) for _ in range(4)]
    for k in range(4):
        top.addBond(ring[k], ring[(k + 1) % 4])
    x = np.random.default_rng(0).uniform(0, 1, (9, 3))
    with TrajectoryWriter(tmp_path / "p.h5", top, np.ones(9), {}, fields=("positions",), kind="coarse-grained") as w:
        w.append(positions=x, box=np.eye(3) * L, step=0, time=0.0)
    found = chain_molecules(open_dataset(tmp_path / "p.h5"))
    assert list(found) == [("PLY", 5)]
    np.testing.assert_array_equal(found[("PLY", 5)], [[2, 1, 4, 0, 3]])


def test_the_rg_distributions_are_plotted(runs, tmp_path):
    from openmm_cgml.analysis.compare import plot_comparison

    written = plot_comparison(compare_runs(runs["ref"], runs["long"], r_max=1.2), tmp_path)
    assert (tmp_path / "distributions.png") in written and (tmp_path / "distributions.png").stat().st_size > 0
