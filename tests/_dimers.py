"""Synthetic datasets for comparison tests: A-B dimers whose centres of mass diffuse with a known coefficient."""

import numpy as np
from openmm import app

from openmm_cgml.dataset import TrajectoryWriter

L, N_MOL, N_FRAMES, DT = 3.0, 60, 150, 1.0


def write_dimers(path, d_com, seed, kind, thermostat=None, temperature=300.0):
    """Rigid-ish A-B dimers whose centres of mass diffuse with coefficient d_com (nm^2/ps)."""
    rng = np.random.default_rng(seed)
    top = app.Topology()
    chain = top.addChain()
    for _ in range(N_MOL):
        res = top.addResidue("DIM", chain)
        a, b = top.addAtom("A", None, res), top.addAtom("B", None, res)
        top.addBond(a, b)
    com = rng.uniform(0, L, (N_MOL, 3)) + np.cumsum(
        rng.normal(scale=np.sqrt(2 * d_com * DT), size=(N_FRAMES, N_MOL, 3)), axis=0)
    u = rng.normal(size=(N_FRAMES, N_MOL, 3))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    bond = 0.3 + 0.01 * rng.normal(size=(N_FRAMES, N_MOL, 1))
    x = np.empty((N_FRAMES, 2 * N_MOL, 3))
    x[:, 0::2] = com - 0.5 * bond * u
    x[:, 1::2] = com + 0.5 * bond * u
    masses = np.full(2 * N_MOL, 20.0)
    thermostat = thermostat or {"kind": "nose-hoover", "tau_ps": 0.5}
    meta = {"test": True, "temperature_K": temperature, "thermostat": {**thermostat, "temperature_K": temperature}}
    with TrajectoryWriter(path, top, masses, meta, fields=("positions",), kind=kind) as w:
        for k in range(N_FRAMES):
            w.append(positions=x[k] % L, box=np.eye(3) * L, step=k * 100, time=k * DT)
