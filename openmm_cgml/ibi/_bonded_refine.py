"""Iterative refinement of the bonded terms next to the pair tables (bonded IBI).

Boltzmann inversion of a bond, angle or dihedral distribution is exact only when that coordinate does not
couple to anything else.  In a CG liquid it does (angles, the excluded-volume of other molecules, the
pair tables), so the CG distributions drift from the AA ones: the CG bond lengths of a 3-bead alkane come out a
few thousandths of a nm off the AA ones.  Run inside IBI, each iteration measures the
CG run's bonded distributions on the frames it already samples and corrects the terms:

- harmonic (bond or angle): x0 += a (<x>_target - <x>_CG) and k *= (var_CG / var_target)^a, the ratio
  clipped to [1/2, 2] per iteration (moment matching: for a harmonic coordinate var = kT / k);
- tabulated (bond, angle, dihedral): U += a (U_target - U_CG), both -kT ln(P / J) from kernel density
  estimates with the target's bandwidth, inside the target's well (U_target within ``well`` = 4 kT of its
  minimum, where the CG run samples too) and clipped to +-1 kT per iteration; outside, the correction is held
  at its value at the nearest updated point (no kink in the wall where sampling ends).  Updating the sparse
  tails as well made a runaway in the demo: a hot run has broad distributions, the update steepens the
  walls, the stiffer table heats the run more (measured on the documentation's results page, "Bonded IBI").

- tabulated, ``update="moments"``: U += a sum_k dl_k f_k(x), a smooth correction in a few basis functions
  (Legendre polynomials of x scaled to [-1, 1] over the target's 0.1-99.9 % range and continued linearly beyond
  it, so no wall steepens; cos/sin k phi for dihedrals), with dl = kT Cov_CG(f)^-1 (<f>_CG - <f>_target): the
  Newton step of the relative entropy S_rel(l) of the coordinate's marginal (gradient beta (<f>_target - <f>_CG),
  Hessian beta^2 Cov_CG(f)), which matches the first ``moments`` moments (per kind: ``{"bond": 2, "angle": 4}``).
  The step is scaled down as a whole when it would change U by more than ``max_step`` kT over the target's range.
  This is the update for a refined network's bonded corrections: the Boltzmann tables grow stiff walls that heat
  its runs (measured on the results page).

a is IBI's damping.  IBI skips the update after an iteration that did not hold its temperature.  Distribution
overlaps (1 = identical, 60 bins over the target's range) are reported per iteration.
"""

from __future__ import annotations

import numpy as np

from ..analysis.boltzmann import bonded_samples, kde_potential
from ..exceptions import ConfigurationError
from ..forces.base import term_from_data
from ..forces.bonded import HarmonicAngles, HarmonicBonds, TabulatedBonds, TabulatedDihedrals
from ..forcespec import HARMONIC_FORMS
from ..topology import key_from_str, key_to_str

__all__ = ["BondedRefiner"]

_REFINABLE = (HarmonicBonds, HarmonicAngles, TabulatedBonds, TabulatedDihedrals)  # TabulatedAngles is a TabulatedBonds
_OVERLAP_BINS = 60


def _overlap(target: np.ndarray, cg: np.ndarray, kind: str) -> float:
    lo, hi = (-np.pi, np.pi) if kind == "dihedral" else (float(target.min()), float(target.max()))
    p, edges = np.histogram(target, bins=_OVERLAP_BINS, range=(lo, hi), density=True)
    q, _ = np.histogram(cg, bins=edges)
    q = q / (cg.size * np.diff(edges))  # CG samples outside the target's range count against the overlap
    return float(np.sum(np.minimum(p, q) * np.diff(edges)))


class BondedRefiner:
    """Moment-matching (harmonic) and Boltzmann-inversion (tabulated) updates of bonded terms during IBI.

    Parameters
    ----------
    terms : sequence of ForceTerm
        The bonded terms to refine (harmonic or tabulated bonds and angles, tabulated dihedrals); every key
        needs target samples.
    targets : dict
        ``{"bond": {key: values}, "angle": ..., "dihedral": ...}`` (:func:`bonded_samples` of the reference).
    kt : float
        kJ/mol.
    damping : float
        a in (0, 1].
    """

    def __init__(self, terms, targets, kt: float, *, damping: float = 0.8, well: float = 4.0, max_step: float = 1.0,
                 update: str = "boltzmann", moments: int | dict = 4):
        if update not in ("boltzmann", "moments"):
            raise ConfigurationError(f"bonded update must be 'boltzmann' or 'moments', got {update!r}")
        per_kind = moments if isinstance(moments, dict) else {}
        unknown = sorted(set(per_kind) - {"bond", "angle", "dihedral"})
        if unknown:
            raise ConfigurationError(f"moments are given per kind (bond, angle, dihedral); got {unknown}")
        self.moments = {kind: int(per_kind.get(kind, 4 if per_kind else moments))
                        for kind in ("bond", "angle", "dihedral")}
        if min(self.moments.values()) < 1:
            raise ConfigurationError(f"moments must be at least 1, got {moments}")
        self.update_kind = update
        self.kt = float(kt)
        self.damping = float(damping)
        self.well = float(well)
        self.max_step = float(max_step)
        self.targets = {kind: {tuple(k): np.asarray(v, float).ravel() for k, v in g.items()}
                        for kind, g in targets.items()}
        bad = [type(t).__name__ for t in terms if not isinstance(t, _REFINABLE)]
        if bad:
            raise ConfigurationError(f"cannot refine bonded terms of type {bad}; refinable are harmonic or tabulated "
                                     "bonds and angles and tabulated dihedrals")
        if not terms:
            raise ConfigurationError("refine_bonded needs bonded terms to refine (none were given)")
        self._bandwidth = {}
        for t in terms:
            for key in self._keys(t):
                values = self.targets.get(t.bonded, {}).get(key)
                if values is None or values.size < 10:
                    raise ConfigurationError(f"no target samples (at least 10) for the {t.bonded} {'-'.join(key)} of "
                                             f"term {t.name!r}: record the reference's bonded distributions")
                if isinstance(t, (TabulatedBonds, TabulatedDihedrals)):
                    self._bandwidth[(t.bonded, key)] = kde_potential(values, t.bonded, self.kt, values[:1])[1]
        self.kinds = {t.bonded for t in terms}
        # the moments update's range of each target (0.1-99.9 %): its Legendre scaling and where a step is bounded
        self._range = {(kind, key): tuple(np.percentile(values, [0.1, 99.9]))
                       for kind, group in self.targets.items() if kind != "dihedral" for key, values in group.items()
                       if values.size} if update == "moments" else {}

    @staticmethod
    def _keys(term) -> list[tuple[str, ...]]:
        """The bead-type keys (tuples) of a term's parameters or tables."""
        keys = term.parameters if hasattr(term, "parameters") else term.tables
        return [key_from_str(k) for k in keys]

    def samples(self, frames, info, box) -> dict:
        """CG bonded samples of ``frames`` (n_frames, n_beads, 3), pooled per key."""
        return bonded_samples(frames, info, box=box, dihedrals="dihedral" in self.kinds)

    def overlaps(self, terms, cg: dict) -> dict[str, float]:
        """``{"bond A-B": overlap}`` of each refined coordinate's CG distribution with the target's."""
        return {f"{t.bonded} {'-'.join(k)}": _overlap(self.targets[t.bonded][k], cg[t.bonded][k], t.bonded)
                for t in terms for k in self._keys(t)}

    def update(self, terms, cg: dict) -> list:
        """New terms, each corrected towards the target distributions (the inputs are not modified)."""
        return [self._update_term(t, cg[t.bonded]) for t in terms]

    def _update_term(self, term, cg):
        a = self.damping
        kind = term.bonded
        if isinstance(term, (HarmonicBonds, HarmonicAngles)):
            x0_name = HARMONIC_FORMS[kind][0]
            new = {}
            for name, par in term.parameters.items():
                key = key_from_str(name)
                tgt, got = self.targets[kind][key], cg[key]
                ratio = float(np.clip(np.var(got) / np.var(tgt), 0.5, 2.0))
                new[key_to_str(key)] = {"k": par["k"] * ratio**a,
                                        x0_name: par[x0_name] + a * (float(np.mean(tgt)) - float(np.mean(got)))}
            return type(term)(new, name=term.name)
        if self.update_kind == "moments":
            return self._moment_update(term, cg)
        tables = {}
        for key, (x, u) in term.tables.items():
            h = self._bandwidth[(kind, key)]
            u_t = kde_potential(self.targets[kind][key], kind, self.kt, x, bandwidth=h)[0]
            u_c = kde_potential(cg[key], kind, self.kt, x, bandwidth=h)[0]
            ok = np.isfinite(u_t) & np.isfinite(u_c) & (u_t <= self.well * self.kt)
            if ok.sum() < 2:  # the CG run does not visit the target's well: nothing to compare
                tables[key] = (x, u)
                continue
            du = u_t - u_c
            du = np.clip(du - du[ok][np.argmin(u_t[ok])], -self.max_step * self.kt, self.max_step * self.kt)
            if kind == "dihedral":
                du_all = np.interp(x, x[ok], du[ok], period=2 * np.pi)
            else:
                du_all = np.interp(x, x[ok], du[ok])  # held at the nearest supported value outside
            new_u = u + a * du_all
            tables[key] = (x, new_u - new_u.min())
        return term.with_tables(tables)

    def _basis(self, kind: str, key, x: np.ndarray) -> np.ndarray:
        """(len(x), moments) basis functions of the moments update at ``x``."""
        x = np.asarray(x, float)
        m = self.moments[kind]
        if kind == "dihedral":  # cos phi, sin phi, cos 2 phi, ...
            return np.stack([(np.cos if i % 2 == 0 else np.sin)((i // 2 + 1) * x) for i in range(m)], axis=1)
        lo, hi = self._range[(kind, key)]
        half = max(0.5 * (hi - lo), 1e-12)
        s = (x - 0.5 * (hi + lo)) / half
        edge = np.clip(s, -1.0, 1.0)
        legendre = np.polynomial.legendre
        cols = []
        for n in range(1, m + 1):
            c = np.zeros(n + 1)
            c[n] = 1.0
            # inside [-1, 1] the polynomial; beyond, continued along its tangent at the edge (bounded force)
            cols.append(legendre.legval(edge, c) + legendre.legval(edge, legendre.legder(c)) * (s - edge))
        return np.stack(cols, axis=1)

    def _moment_update(self, term, cg):
        kind = term.bonded
        tables = {}
        for key, (x, u) in term.tables.items():
            got = np.asarray(cg[key], float).ravel()
            if got.size < 10 * self.moments[kind]:  # too few CG samples for the covariance
                tables[key] = (x, u)
                continue
            f_cg, f_t = self._basis(kind, key, got), self._basis(kind, key, self.targets[kind][key])
            cov = np.atleast_2d(np.cov(f_cg, rowvar=False))
            cov = cov + 1e-9 * np.trace(cov) / len(cov) * np.eye(len(cov))
            step = self.kt * np.linalg.solve(cov, f_cg.mean(axis=0) - f_t.mean(axis=0))
            du = self._basis(kind, key, x) @ step
            if kind == "dihedral":
                inside = np.ones_like(x, bool)
            else:
                lo, hi = self._range[(kind, key)]
                inside = (x >= lo) & (x <= hi)
            span = float(np.ptp(du[inside])) if inside.sum() > 1 else float(np.ptp(du))
            if span > self.max_step * self.kt:  # the whole step scaled, keeping its shape
                du = du * (self.max_step * self.kt / span)
            new_u = u + self.damping * du
            tables[key] = (x, new_u - new_u.min())
        return term.with_tables(tables)

    @staticmethod
    def to_data(terms) -> list[dict]:
        return [t.to_data() for t in terms]

    @staticmethod
    def from_data(data) -> list:
        return [term_from_data(d) for d in data]
