"""Per-species molecular diffusion (``species_diffusion``, ``species_diffusion_check``) on synthetic CG datasets:
molecules of two species (residue names) random-walking with known, different D, or caged."""

import numpy as np
import pytest
from openmm import app

from openmm_cgml.analysis import diffusion_check, molecular_diffusion, species_diffusion, species_diffusion_check
from openmm_cgml.dataset import TrajectoryWriter, open_dataset

L, N_EACH, N_FRAMES, DT = 4.0, 60, 400, 1.0
#: The anion is a rigid dimer of unequal beads (its centre of mass is not its midpoint); the cation one bead.
DIMER = np.array([[0.0, 0.0, 0.0], [0.2, 0.05, -0.03]])
DIMER_MASSES = np.array([30.0, 50.0])


def _walk(rng, d: float | None, n: int) -> np.ndarray:
    """Centres of mass (n_frames, n, 3): Brownian with diffusion coefficient ``d`` (nm^2/ps), or caged
    (``d`` None: each rattling by 0.05 nm around a fixed site)."""
    start = rng.uniform(0, L, (1, n, 3))
    if d is None:
        return start + rng.normal(scale=0.05, size=(N_FRAMES, n, 3))
    steps = rng.normal(scale=np.sqrt(2 * d * DT), size=(N_FRAMES - 1, n, 3))
    return np.concatenate([start, start + np.cumsum(steps, axis=0)])


def _write(path, d_cation: float | None, d_anion: float | None, *, seed: int = 0, n_frames: int = N_FRAMES):
    """CAT and ANI molecules alternating (CAT first), so that the order of first appearance is not the sorted one."""
    rng = np.random.default_rng(seed)
    top = app.Topology()
    chain = top.addChain()
    masses = []
    for _ in range(N_EACH):
        top.addAtom("C", None, top.addResidue("CAT", chain))
        masses.append(40.0)
        res = top.addResidue("ANI", chain)
        a, b = top.addAtom("A1", None, res), top.addAtom("A2", None, res)
        top.addBond(a, b)
        masses.extend(DIMER_MASSES)
    cat, ani = _walk(rng, d_cation, N_EACH), _walk(rng, d_anion, N_EACH)
    offset = DIMER - DIMER_MASSES @ DIMER / DIMER_MASSES.sum()  # bead positions relative to the dimer's COM
    with TrajectoryWriter(path, top, np.array(masses), {"test": True}, fields=("positions",),
                          kind="coarse-grained") as w:
        for k in range(n_frames):
            x = np.concatenate([np.concatenate([cat[k, m][None], ani[k, m] + offset]) for m in range(N_EACH)])
            w.append(positions=x % L, box=np.eye(3) * L, step=k, time=k * DT)
    return open_dataset(path)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("species") / "mixed.h5", 0.004, 0.001, seed=1)


def test_each_species_gets_its_own_diffusion_coefficient(mixed):
    fits = species_diffusion(mixed)
    assert list(fits) == ["CAT", "ANI"]  # order of first appearance
    for name, d_true in (("CAT", 0.004), ("ANI", 0.001)):
        fit = fits[name]
        assert fit.converged, fit.reason
        assert 0 < fit.D_err < 0.2 * d_true
        # the frame of the whole system's centre of mass costs D a fraction of order 1/N
        assert abs(fit.D - d_true) < 3.5 * fit.D_err + 0.03 * d_true, (name, fit.D, fit.D_err)
    assert abs(fits["CAT"].D - fits["ANI"].D) > 5 * np.hypot(fits["CAT"].D_err, fits["ANI"].D_err)


def test_the_species_add_up_to_all_molecules(mixed, tmp_path):
    """Over one fit window D is linear in the MSD, and the molecule-weighted mean of the species' MSDs is the MSD
    of all molecules (one centre-of-mass frame for all): D of all molecules is the molecule-weighted mean of the
    species' D, exactly; with one D for both species each agrees with it."""
    window = (2.0, 30.0)
    fits = species_diffusion(mixed, fit_range=window)
    _, whole = molecular_diffusion(mixed, fit_range=window)
    assert whole.D == pytest.approx(0.5 * (fits["CAT"].D + fits["ANI"].D), rel=1e-9)

    same = _write(tmp_path / "same.h5", 0.002, 0.002, seed=2)
    fits = species_diffusion(same)
    _, whole = molecular_diffusion(same)
    assert whole.converged
    for name, fit in fits.items():
        assert fit.converged
        assert abs(fit.D - whole.D) < 3 * np.hypot(fit.D_err, whole.D_err), name
    assert whole.D_err < min(f.D_err for f in fits.values())  # twice the molecules


def test_a_caged_species_is_flagged_not_converged(tmp_path):
    ds = _write(tmp_path / "caged.h5", 0.004, None, seed=3)
    fits = species_diffusion(ds)
    assert fits["CAT"].converged and not fits["ANI"].converged
    assert fits["ANI"].reason.startswith("not converged")
    records = species_diffusion_check(ds)
    assert records["CAT"]["converged"] and not records["ANI"]["converged"]
    assert records["ANI"]["reason"] == fits["ANI"].reason
    assert records["CAT"]["D_nm2_per_ps"] == pytest.approx(fits["CAT"].D)
    assert records["CAT"]["D_err_nm2_per_ps"] == pytest.approx(fits["CAT"].D_err)
    assert records["CAT"]["molecules"] == N_EACH
    assert set(records["CAT"]) == set(diffusion_check(ds)) | {"molecules"}


def test_a_run_too_short_to_fit_is_reported_per_species(tmp_path):
    ds = _write(tmp_path / "short.h5", 0.004, 0.001, seed=4, n_frames=3)
    records = species_diffusion_check(ds)
    assert list(records) == ["CAT", "ANI"]
    for record in records.values():
        assert record["converged"] is False and record["reason"].startswith("not converged:")
        assert "D_nm2_per_ps" not in record and record["frames"] == 3 and record["molecules"] == N_EACH
    # a path works as a dataset
    assert species_diffusion_check(ds.path)["CAT"]["reason"] == records["CAT"]["reason"]
