"""Polymer chain analysis: size, scaling, bonded geometry along the chain, intra-chain pairs and relaxation.

Chains are given as a list of index arrays (the particle indices of each chain, in bond order along the chain)
or as an integer array ``(n_chains, n_per_chain)``.  Positions may be wrapped into a periodic box: with ``box``
each chain is made whole by taking every bond as its minimum image (:func:`openmm_cgml.geometry.minimum_image`),
which is exact as long as no bond is longer than half the smallest box width.

Units: positions nm, times ps, angles radians, masses Da.  Errors of averages are standard errors, the larger of
the block error over contiguous blocks of frames (:func:`openmm_cgml.analysis.statistics.block_average`) and the
standard error over chains (chains treated as independent); ``error_method`` says which.

Relaxation (bond, end-to-end and Rouse-mode autocorrelations) is judged by whether the normalised
autocorrelation fell below a threshold (1/e by default) within the trajectory: ``decayed`` is False, with a
message, when it did not, which is how an unrelaxed polymer reference is recognised.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..exceptions import TrajectoryError
from ._checks import as_boxes, as_times, as_trajectory, minimum_image
from .distributions import Distribution, compute_angles, compute_bonds, compute_dihedrals, compute_distribution
from .msd import (
    _CHUNK_ELEMENTS,
    DiffusionResult,
    MSDResult,
    _fft_size,
    autocorrelation_fft,
    compute_msd,
    diffusion_coefficient,
    diffusive_regime,
    unwrap_positions,
)
from .statistics import Estimate, block_average

__all__ = [
    "linear_path",
    "ChainDimensions",
    "ScalingFit",
    "ChainScaling",
    "InternalDistances",
    "AlongChain",
    "IntraChainDistribution",
    "ChainCorrelation",
    "MSDRegime",
    "ChainMSD",
    "RouseModes",
    "chain_dimensions",
    "fit_scaling_exponent",
    "scaling_with_length",
    "internal_distances",
    "along_chain",
    "intra_chain_distribution",
    "bond_autocorrelation",
    "end_to_end_autocorrelation",
    "classify_msd",
    "chain_com_msd",
    "rouse_modes",
    "rouse_theory",
]

logger = logging.getLogger(__name__)

#: Default threshold below which an autocorrelation counts as decayed.
DECAY_THRESHOLD = float(np.exp(-1.0))
#: Elements per chunk when distances of many pairs are histogrammed.
_PAIR_CHUNK = 4_000_000


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainDimensions:
    """Radius of gyration and end-to-end distance of every chain in every frame.

    Attributes
    ----------
    rg : ndarray, shape (n_frames, n_chains)
        Radius of gyration (mass-weighted if masses were given), nm.
    ree : ndarray, shape (n_frames, n_chains)
        End-to-end distance norm(r_last - r_first), nm.
    ree_vectors : ndarray, shape (n_frames, n_chains, 3)
        End-to-end vectors r_last - r_first (through the unwrapped chain), nm.
    n_beads : ndarray of int, shape (n_chains,)
        Beads per chain (bonds: ``n_beads - 1``).
    rg2, ree2 : Estimate
        <Rg^2> and <Ree^2> over frames and chains with their standard errors, nm^2.
    ratio : Estimate
        <Ree^2> / <Rg^2> (6 for long ideal chains, 12 for long rods); jackknife error over the same units.
    rg_distribution, ree_distribution : Distribution
        Probability densities of Rg and Ree, 1/nm (errors from blocks of frames).
    error_method : str
        ``"blocks"`` (blocks of frames), ``"chains"`` (over chains) or ``"none"``: which gave the (larger) error.
    """

    rg: np.ndarray
    ree: np.ndarray
    ree_vectors: np.ndarray
    n_beads: np.ndarray
    rg2: Estimate
    ree2: Estimate
    ratio: Estimate
    rg_distribution: Distribution
    ree_distribution: Distribution
    error_method: str

    @property
    def n_frames(self) -> int:
        return int(self.rg.shape[0])

    @property
    def n_chains(self) -> int:
        return int(self.rg.shape[1])

    @property
    def n_bonds(self) -> np.ndarray:
        """Bonds per chain, ``n_beads - 1``."""
        return self.n_beads - 1


@dataclass(frozen=True)
class ScalingFit:
    """Power law <R^2> = prefactor * n^(2 nu), fitted as a straight line in log-log.

    Attributes
    ----------
    nu : Estimate
        Flory exponent with its standard error (0.5 ideal chain, ~0.588 good solvent, 1 rod).
    prefactor : float
        nm^2 (the mean-square size at n = 1 on the fitted line).
    n_range : (float, float)
        Smallest and largest n (bonds) in the fit.
    n_points : int
    error_method : str
        ``"weighted"`` (from the errors of the points, scaled up by sqrt(chi^2/dof) if larger than 1),
        ``"residuals"`` (unweighted, from the scatter of the points) or ``"none"``.
    """

    nu: Estimate
    prefactor: float
    n_range: tuple[float, float]
    n_points: int
    error_method: str


@dataclass(frozen=True)
class ChainScaling:
    """Chain size against chain length over several sets of chains (one length per set).

    Attributes
    ----------
    n_bonds : ndarray of int, shape (n_sets,)
        Bonds per chain N, ascending.
    ree2, ree2_err, rg2, rg2_err : ndarray, shape (n_sets,)
        <Ree^2> and <Rg^2> with standard errors, nm^2.
    ratio : ndarray, shape (n_sets,)
        <Ree^2> / <Rg^2>.
    nu_ree, nu_rg : ScalingFit
        Exponents from <Ree^2> ~ N^(2 nu) and <Rg^2> ~ N^(2 nu).
    """

    n_bonds: np.ndarray
    ree2: np.ndarray
    ree2_err: np.ndarray
    rg2: np.ndarray
    rg2_err: np.ndarray
    ratio: np.ndarray
    nu_ree: ScalingFit
    nu_rg: ScalingFit

    @property
    def ree2_per_bond(self) -> np.ndarray:
        """<Ree^2> / N, nm^2 (constant, b^2 C_inf, for ideal chains)."""
        return self.ree2 / self.n_bonds

    @property
    def rg2_per_bond(self) -> np.ndarray:
        """<Rg^2> / N, nm^2."""
        return self.rg2 / self.n_bonds


@dataclass(frozen=True)
class InternalDistances:
    """Mean-square internal distances <R^2(n)> between beads n bonds apart inside the chains.

    Attributes
    ----------
    n : ndarray of int, shape (n_max,)
        Segment lengths in bonds, 1..(longest chain - 1).
    r2, r2_err : ndarray, shape (n_max,)
        <R^2(n)> over all segments of n bonds in all chains and frames, and its standard error, nm^2.
    n_segments : ndarray of int, shape (n_max,)
        Segments of n bonds per frame.
    fit : ScalingFit
        <R^2(n)> ~ n^(2 nu) over ``fit.n_range``.
    error_method : str
    """

    n: np.ndarray
    r2: np.ndarray
    r2_err: np.ndarray
    n_segments: np.ndarray
    fit: ScalingFit
    error_method: str

    @property
    def r2_per_n(self) -> np.ndarray:
        """<R^2(n)> / n, nm^2: flat (b^2 C_inf) for ideal chains, rising for swollen ones."""
        return self.r2 / self.n

    @property
    def r2_per_n_err(self) -> np.ndarray:
        return self.r2_err / self.n


@dataclass(frozen=True)
class AlongChain:
    """Bond lengths, bond angles or torsions indexed by position along the chain (ends vs middle).

    Attributes
    ----------
    kind : str
        ``"bond"``, ``"angle"`` or ``"torsion"``.
    unit : str
        ``"nm"`` for bonds, ``"rad"`` for angles and torsions.
    position : ndarray of int, shape (n_positions,)
        Position i along the chain: bond i joins beads i and i + 1, angle i is centred on bead i + 1 (beads
        i, i + 1, i + 2), torsion i turns about the bond from bead i + 1 to i + 2 (beads i .. i + 3).
    values : ndarray, shape (n_frames, n_chains, n_positions)
        nm or radians (angles in [0, pi], torsions in (-pi, pi], IUPAC sign convention).
    mean, mean_err, std : ndarray, shape (n_positions,)
        Mean over frames and chains, its standard error and the spread; circular mean and circular standard
        deviation sqrt(-2 ln R) for torsions.
    error_method : str
    """

    kind: str
    unit: str
    position: np.ndarray
    values: np.ndarray
    mean: np.ndarray
    mean_err: np.ndarray
    std: np.ndarray
    error_method: str

    def distribution(self, position: int | Sequence[int] | None = None, *, bins: int = 100,
                     value_range: tuple[float, float] | None = None, n_blocks: int = 5) -> Distribution:
        """Probability density of the values at one position, several positions, or all (``None``).

        ``value_range`` defaults to (0, pi) for angles, (-pi, pi) for torsions and the data range for bonds.
        """
        sel = self.position if position is None else np.atleast_1d(np.asarray(position, dtype=np.int64))
        if sel.size == 0 or sel.min() < 0 or sel.max() >= self.position.size:
            raise TrajectoryError(f"position must lie in 0..{self.position.size - 1} along the chain, got {position}")
        if value_range is None and self.kind != "bond":
            value_range = (0.0, math.pi) if self.kind == "angle" else (-math.pi, math.pi)
        vals = self.values[:, :, sel].reshape(self.values.shape[0], -1)
        return compute_distribution(vals, bins=bins, value_range=value_range, n_blocks=n_blocks)


@dataclass(frozen=True)
class IntraChainDistribution:
    """Distances between beads of the same chain at least ``min_separation`` bonds apart.

    Normalisation (per chain, not against a bulk density as an RDF):

    * ``pairs_per_chain`` is the mean number of such pairs per chain (per frame) per nm of distance, so that
      its integral over a range is the mean number of pairs per chain in that range, and over all distances
      ``n_pairs_per_chain``;
    * ``probability`` = ``pairs_per_chain / n_pairs_per_chain``: the distance distribution of a random such
      pair, 1/nm (integrates to 1 when no pair lies beyond ``edges[-1]``);
    * ``shell_density`` is the mean number of same-chain partners (at least ``min_separation`` bonds away)
      per bead per nm^3 of the spherical shell, 2 * pairs / (n_frames * n_beads * shell volume): the
      intra-chain analogue of rho g(r).

    Attributes
    ----------
    edges : ndarray (n_bins + 1,), centers : ndarray (n_bins,)
        nm.
    pairs_per_chain, pairs_per_chain_err : ndarray (n_bins,)
        1/nm; the error from blocks of frames (NaN with fewer than 2 frames).
    probability : ndarray (n_bins,)
        1/nm.
    shell_density : ndarray (n_bins,)
        1/nm^3.
    n_pairs_per_chain : float
        Pairs counted per chain (all distances).
    n_pairs_outside : int
        Pairs (all frames) beyond the last edge, not in the histogram.
    mean_square_distance : float
        <r^2> over all pairs counted, nm^2.
    min_separation, n_frames, n_chains : int
    """

    edges: np.ndarray
    centers: np.ndarray
    pairs_per_chain: np.ndarray
    pairs_per_chain_err: np.ndarray
    probability: np.ndarray
    shell_density: np.ndarray
    n_pairs_per_chain: float
    n_pairs_outside: int
    mean_square_distance: float
    min_separation: int
    n_frames: int
    n_chains: int


@dataclass(frozen=True)
class ChainCorrelation:
    """Normalised vector autocorrelation C(t) = <v(t) . v(0)> / <v^2>, all time origins, averaged over chains.

    Attributes
    ----------
    kind : str
        ``"bond"``, ``"end-to-end"`` or ``"Rouse mode p"``.
    lag_times : ndarray (n_lags,)
        ps, from 0.
    correlation : ndarray (n_lags,)
        C(t), 1 at t = 0.
    correlation_err : ndarray (n_lags,)
        Standard error over chains (NaN for one chain).
    mean_square : float
        <v^2>, nm^2.
    tau_integral : float
        int_0 C(t) dt up to the first zero crossing of C (linearly interpolated), or up to the longest lag
        if C does not cross zero; ps.  A lower bound when ``decayed`` is False.
    integral_limit : float
        Where the integral stopped, ps.
    tau_kww, beta_kww : float
        Stretched exponential (Kohlrausch-Williams-Watts) exp(-(t/tau)^beta) fitted by least squares to C(t)
        for 0 < t while C > ``fit_floor`` (before the first zero crossing); ps and dimensionless.  NaN if the fit
        was not asked for, had fewer than 3 points or failed.
    tau_kww_mean : float
        Integral of the fitted KWW function, tau / beta * Gamma(1 / beta), ps.
    decayed : bool
        Whether C fell below ``threshold`` within the computed lags.
    decay_time : float or None
        First lag at which C < ``threshold``, ps.
    threshold : float
    message : str
        What happened (``"end-to-end autocorrelation has not decayed: C(t_max)=0.78 > 1/e ..."``).
    """

    kind: str
    lag_times: np.ndarray
    correlation: np.ndarray
    correlation_err: np.ndarray
    mean_square: float
    tau_integral: float
    integral_limit: float
    tau_kww: float
    beta_kww: float
    tau_kww_mean: float
    decayed: bool
    decay_time: float | None
    threshold: float
    message: str


@dataclass(frozen=True)
class MSDRegime:
    """Classification of an MSD curve by its local log-log slope alpha = d ln MSD / d ln t.

    Attributes
    ----------
    regime : str
        ``"diffusive"`` (:func:`openmm_cgml.analysis.msd.diffusive_regime` found a window with abs(alpha - 1) <
        tolerance spanning a factor ``min_span``), else by the exponent over the last factor ``min_span`` of lags:
        ``"sub-diffusive"`` (alpha < ``subdiffusive_below``), ``"super-diffusive"`` (alpha > 1 + tolerance,
        ballistic or drifting) or ``"undetermined"`` (in between, no window long enough).
    exponent : float
        Log-log slope of the MSD fitted over ``window``.
    window : (float, float)
        ps: the diffusive window, or the last factor ``min_span`` of lags.
    subdiffusive_exponent : float or None
        Log-log slope over the longest run of local slopes below ``subdiffusive_below`` (None if none).
    subdiffusive_window : (float, float) or None
        ps.
    lag_times, local_slope : ndarray
        Log-spaced lags (ps) and the smoothed local slope there.
    reason : str
        A sentence for reports (why D was or was not fitted).
    tolerance, min_span, subdiffusive_below : float
        The criteria.
    """

    regime: str
    exponent: float
    window: tuple[float, float]
    subdiffusive_exponent: float | None
    subdiffusive_window: tuple[float, float] | None
    lag_times: np.ndarray
    local_slope: np.ndarray
    reason: str
    tolerance: float
    min_span: float
    subdiffusive_below: float

    @property
    def diffusive(self) -> bool:
        return self.regime == "diffusive"


@dataclass(frozen=True)
class ChainMSD:
    """Mean-square displacement of the chain centres of mass and its regime.

    Attributes
    ----------
    msd : MSDResult
        MSD of the chain centres of mass (the chains play the particles), nm^2.
    regime : MSDRegime
    diffusion : DiffusionResult or None
        D fitted over the diffusive window; None unless ``regime.regime == "diffusive"`` (never fitted on a
        sub-diffusive range).
    reason : str
        Why D is or is not given.
    """

    msd: MSDResult
    regime: MSDRegime
    diffusion: DiffusionResult | None
    reason: str

    @property
    def D(self) -> float | None:
        """Centre-of-mass diffusion coefficient, nm^2/ps, or None when the MSD is not diffusive."""
        return None if self.diffusion is None else self.diffusion.D

    @property
    def D_err(self) -> float | None:
        return None if self.diffusion is None else self.diffusion.D_err


@dataclass(frozen=True)
class RouseModes:
    """Rouse modes X_p(t) = (1/N) sum_{n=1}^{N} r_n(t) cos(p pi (n - 1/2) / N) of chains of N beads.

    Attributes
    ----------
    p : ndarray of int (n_modes,)
        Mode numbers, 1..N-1.
    n_beads : int
    amplitude2, amplitude2_err : ndarray (n_modes,)
        <X_p . X_p> (3-D vector, all frames and chains) and its standard error, nm^2.  For a Rouse chain of
        springs k at temperature kT, 3 kT / (8 N k sin^2(p pi / 2N)) (:func:`rouse_theory`), ~ 1/p^2 for p << N.
    correlations : tuple of ChainCorrelation
        <X_p(t) . X_p(0)> / <X_p^2> of each mode, with its relaxation times and ``decayed`` flag.
    error_method : str
    """

    p: np.ndarray
    n_beads: int
    amplitude2: np.ndarray
    amplitude2_err: np.ndarray
    correlations: tuple[ChainCorrelation, ...]
    error_method: str

    @property
    def lag_times(self) -> np.ndarray:
        return self.correlations[0].lag_times

    @property
    def correlation(self) -> np.ndarray:
        """C_p(t) of all modes, shape (n_lags, n_modes)."""
        return np.stack([c.correlation for c in self.correlations], axis=1)

    @property
    def tau_integral(self) -> np.ndarray:
        """ps, per mode."""
        return np.array([c.tau_integral for c in self.correlations])

    @property
    def tau_kww(self) -> np.ndarray:
        return np.array([c.tau_kww for c in self.correlations])

    @property
    def beta_kww(self) -> np.ndarray:
        return np.array([c.beta_kww for c in self.correlations])

    @property
    def decayed(self) -> np.ndarray:
        return np.array([c.decayed for c in self.correlations])


# --------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------
class _Chains:
    """Validated chains: a list of index arrays, grouped by length for vectorised work."""

    def __init__(self, chains, n_particles: int, *, min_beads: int = 2, equal_length: bool = False,
                 what: str = "this analysis"):
        rows = self._rows(chains)
        if not rows:
            raise TrajectoryError("chains is empty; give at least one chain (a list of particle index arrays)")
        self.rows: list[np.ndarray] = []
        for c, row in enumerate(rows):
            arr = np.asarray(row)
            if arr.ndim != 1:
                raise TrajectoryError(f"chain {c} must be a 1-D array of particle indices, got shape {arr.shape}")
            if arr.size and arr.dtype.kind not in "iu":
                raise TrajectoryError(f"chain {c} must hold integer particle indices, got dtype {arr.dtype}")
            arr = arr.astype(np.int64)
            if arr.size < min_beads:
                raise TrajectoryError(f"chain {c} has {arr.size} bead{'s' if arr.size != 1 else ''}; {what} needs at "
                                      f"least {min_beads} beads per chain")
            bad = arr[(arr < 0) | (arr >= n_particles)]
            if bad.size:
                raise TrajectoryError(f"chain {c} refers to particle {int(bad[0])}, outside 0..{n_particles - 1} "
                                      f"(the trajectory has {n_particles} particles)")
            if np.unique(arr).size != arr.size:
                raise TrajectoryError(f"chain {c} lists a particle more than once")
            self.rows.append(arr)
        self.lengths = np.array([r.size for r in self.rows], dtype=np.int64)
        if equal_length and np.unique(self.lengths).size > 1:
            raise TrajectoryError(f"{what} needs chains of equal length; got lengths "
                                  f"{', '.join(str(v) for v in np.unique(self.lengths))} beads")

    @staticmethod
    def _rows(chains) -> list:
        if isinstance(chains, np.ndarray):
            if chains.ndim == 1 and chains.dtype != object:
                return [chains]
            if chains.ndim == 2:
                return list(chains)
            if chains.ndim == 1:
                return list(chains)
            raise TrajectoryError(f"chains must be a list of index arrays or an array (n_chains, n_per_chain), "
                                  f"got shape {chains.shape}")
        rows = list(chains)
        if rows and all(np.ndim(r) == 0 for r in rows):
            return [np.asarray(rows)]
        return rows

    @property
    def n_chains(self) -> int:
        return len(self.rows)

    def groups(self):
        """(chain ids, indices (n_group, n_beads)) for each chain length."""
        for n in np.unique(self.lengths):
            ids = np.flatnonzero(self.lengths == n)
            yield ids, np.stack([self.rows[i] for i in ids])

    def array(self) -> np.ndarray:
        """(n_chains, n_beads) for equal-length chains."""
        return np.stack(self.rows)


def linear_path(members, neighbours) -> tuple[list[int] | None, str]:
    """The particles ``members`` of one molecule in bond order along it, if its bonds make it one unbranched chain.

    ``neighbours[i]`` lists the particles bonded to particle ``i`` (bonds inside the molecule).  The walk starts at
    the chain end with the lower index.  Returns ``(path, "")``, or ``(None, why)``: ``"branched at particle i (k
    bonds)"``, or ``"not a linear chain (b bonds, e chain ends: a ring or several pieces)"``; a single particle is
    a path of one.
    """
    members = [int(i) for i in members]
    if len(members) == 1:
        return members, ""
    degree = {i: len(neighbours[i]) for i in members}
    branch = [i for i, d in degree.items() if d > 2]
    if branch:
        return None, f"branched at particle {branch[0]} ({degree[branch[0]]} bonds)"
    ends = sorted(i for i, d in degree.items() if d == 1)
    n_bonds = sum(degree.values()) // 2
    if len(ends) != 2 or n_bonds != len(members) - 1:
        return None, f"not a linear chain ({n_bonds} bonds, {len(ends)} chain ends: a ring or several pieces)"
    path, previous = [ends[0]], -1
    while len(path) < len(members):
        here = path[-1]
        step = [j for j in neighbours[here] if j != previous]
        if not step:  # the bonds leave the molecule's particles: not this molecule's chain
            return None, "not a linear chain (its bonds leave the molecule)"
        previous = here
        path.append(step[0])
    return path, ""


def _prepare(positions, chains, box, *, min_beads: int = 2, equal_length: bool = False, what: str = "this analysis"):
    x = as_trajectory(positions)
    ch = _Chains(chains, x.shape[1], min_beads=min_beads, equal_length=equal_length, what=what)
    boxes = None if box is None else as_boxes(box, x.shape[0])
    return x, ch, boxes


def _weights(masses, n_particles: int) -> np.ndarray:
    if masses is None:
        return np.ones(n_particles)
    w = np.asarray(masses, dtype=np.float64)
    if w.shape != (n_particles,):
        raise TrajectoryError(f"masses must have one entry per particle ({n_particles}), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise TrajectoryError("masses must be finite and non-negative")
    return w


def _whole(x: np.ndarray, idx: np.ndarray, boxes: np.ndarray | None) -> np.ndarray:
    """Chain positions (n_frames, n_chains, n_beads, 3), made whole: each bond its minimum image."""
    seg = x[:, idx]
    if boxes is None:
        return seg
    bonds = minimum_image(np.diff(seg, axis=2), boxes)
    out = np.empty_like(seg)
    out[:, :, 0] = seg[:, :, 0]
    np.cumsum(bonds, axis=2, out=out[:, :, 1:])
    out[:, :, 1:] += seg[:, :, :1]
    return out


def _error(per_frame: np.ndarray | None, per_chain: np.ndarray | None, n_blocks: int) -> tuple[float, str, float]:
    """Standard error of a mean: the larger of the block error over frames and the error over chains."""
    found = []
    if per_frame is not None and n_blocks >= 2 and per_frame.size >= n_blocks:
        found.append((block_average(per_frame, n_blocks).error, "blocks", float(n_blocks)))
    if per_chain is not None:
        pc = per_chain[np.isfinite(per_chain)]
        if pc.size >= 2:
            found.append((float(pc.std(ddof=1) / np.sqrt(pc.size)), "chains", float(pc.size)))
    if not found:
        return float("nan"), "none", float("nan")
    return max(found, key=lambda f: f[0])


def _mean_estimate(values: np.ndarray, n_blocks: int) -> tuple[Estimate, str]:
    """Mean of values (n_frames, n_chains) with :func:`_error`."""
    err, method, n_eff = _error(values.mean(axis=1), values.mean(axis=0), n_blocks)
    return Estimate(float(values.mean()), err, n_eff), method


def _jackknife_ratio(a: np.ndarray, b: np.ndarray) -> float:
    """Jackknife standard error of sum(a) / sum(b) over the units a_k, b_k."""
    k = a.size
    if k < 2:
        return float("nan")
    r = (a.sum() - a) / (b.sum() - b)
    return float(np.sqrt((k - 1) / k * np.sum((r - r.mean()) ** 2)))


def _ratio_estimate(num: np.ndarray, den: np.ndarray, n_blocks: int) -> Estimate:
    """<num> / <den> over (n_frames, n_chains), jackknife error over frame blocks and over chains (larger)."""
    errs = []
    if n_blocks >= 2 and num.shape[0] >= n_blocks:
        parts = np.array_split(np.arange(num.shape[0]), n_blocks)
        errs.append((_jackknife_ratio(np.array([num[p].mean() for p in parts]),
                                      np.array([den[p].mean() for p in parts])), float(n_blocks)))
    if num.shape[1] >= 2:
        errs.append((_jackknife_ratio(num.mean(axis=0), den.mean(axis=0)), float(num.shape[1])))
    err, n_eff = max(errs) if errs else (float("nan"), float("nan"))
    return Estimate(float(num.mean() / den.mean()), err, n_eff)


def _check_blocks(n_blocks: int) -> None:
    if n_blocks < 0 or n_blocks == 1:
        raise TrajectoryError(f"n_blocks must be 0 (no block errors) or at least 2, got {n_blocks}")


# --------------------------------------------------------------------------------------
# Size and scaling
# --------------------------------------------------------------------------------------
def chain_dimensions(positions, chains, box=None, *, masses=None, bins: int = 100,
                     n_blocks: int = 5) -> ChainDimensions:
    """Radius of gyration and end-to-end distance of every chain in every frame, with averages and histograms.

    Parameters
    ----------
    positions : array, shape (n_frames, n_particles, 3)
        nm (wrapped or not).
    chains : list of index arrays or int array (n_chains, n_per_chain)
        Particle indices of each chain in bond order; chains may differ in length.
    box : array, optional
        Box vectors, nm ((3,), (3, 3), (n_frames, 3) or (n_frames, 3, 3)); each bond is then taken as its
        minimum image so that chains crossing the boundary are whole.  Omit for unwrapped positions.
    masses : array (n_particles,), optional
        Da; Rg is mass-weighted, Rg^2 = sum m_i (r_i - r_com)^2 / sum m_i (equal masses if omitted).
    bins : int
        Bins of the Rg and Ree histograms.
    n_blocks : int
        Blocks of frames for the block errors (used when there are at least ``n_blocks`` frames).

    Returns
    -------
    ChainDimensions
    """
    _check_blocks(n_blocks)
    x, ch, boxes = _prepare(positions, chains, box, what="chain_dimensions")
    w = _weights(masses, x.shape[1])
    n_frames = x.shape[0]
    rg = np.empty((n_frames, ch.n_chains))
    ree_vec = np.empty((n_frames, ch.n_chains, 3))
    for ids, idx in ch.groups():
        u = _whole(x, idx, boxes)
        wc = w[idx]
        total = wc.sum(axis=1)
        if np.any(total <= 0):
            raise TrajectoryError(f"chain {int(ids[np.argmax(total <= 0)])} has zero total mass")
        com = np.einsum("fcni,cn->fci", u, wc) / total[None, :, None]
        rg[:, ids] = np.sqrt(np.einsum("fcn,cn->fc", np.sum((u - com[:, :, None]) ** 2, axis=-1), wc) / total)
        ree_vec[:, ids] = u[:, :, -1] - u[:, :, 0]
    ree = np.linalg.norm(ree_vec, axis=-1)
    rg2, method = _mean_estimate(rg**2, n_blocks)
    ree2, _ = _mean_estimate(ree**2, n_blocks)
    return ChainDimensions(rg=rg, ree=ree, ree_vectors=ree_vec, n_beads=ch.lengths.copy(), rg2=rg2, ree2=ree2,
                           ratio=_ratio_estimate(ree**2, rg**2, n_blocks),
                           rg_distribution=compute_distribution(rg, bins=bins, n_blocks=max(n_blocks, 1)),
                           ree_distribution=compute_distribution(ree, bins=bins, n_blocks=max(n_blocks, 1)),
                           error_method=method)


def fit_scaling_exponent(n, r2, r2_err=None, *, n_range: tuple[float, float] | None = None) -> ScalingFit:
    """Fit <R^2> = prefactor * n^(2 nu) by a straight line ln <R^2> = ln prefactor + 2 nu ln n.

    Parameters
    ----------
    n : array
        Chain or segment lengths in bonds (> 0).
    r2 : array
        Mean-square sizes, nm^2 (> 0).
    r2_err : array, optional
        Their standard errors, nm^2; the fit is weighted by them (relative errors in log space) and the error of
        nu comes from them, scaled by sqrt(chi^2/dof) when that exceeds 1.  Without usable errors (missing, NaN or
        zero; relative errors below 1e-10 count as zero) the fit is unweighted and the error comes from the scatter
        of the points (needs 3 or more).
    n_range : (n_min, n_max), optional
        Only points with n_min <= n <= n_max.
    """
    n = np.asarray(n, dtype=np.float64)
    y = np.asarray(r2, dtype=np.float64)
    e = np.full_like(y, np.nan) if r2_err is None else np.asarray(r2_err, dtype=np.float64)
    if n.ndim != 1 or n.shape != y.shape or e.shape != y.shape:
        raise TrajectoryError(f"n, r2 and r2_err must be 1-D of equal length, got {n.shape}, {y.shape}, {e.shape}")
    sel = (n > 0) & (y > 0) & np.isfinite(y)
    if n_range is not None:
        sel &= (n >= n_range[0]) & (n <= n_range[1])
    if np.unique(n[sel]).size < 2:
        raise TrajectoryError(f"a scaling fit needs at least 2 distinct lengths with positive size, got "
                              f"{np.unique(n[sel]).size} (n_range {n_range})")
    ln, ly, le = np.log(n[sel]), np.log(y[sel]), e[sel] / y[sel]
    a = np.vstack([ln, np.ones_like(ln)]).T
    dof = ln.size - 2
    if np.all(np.isfinite(le)) and np.all(le > 1e-10):      # rounding-level errors would give arbitrary weights
        wgt = 1.0 / le**2
        cov = np.linalg.inv(a.T @ (a * wgt[:, None]))
        coef = cov @ (a.T @ (wgt * ly))
        chi2 = float(np.sum(wgt * (ly - a @ coef) ** 2))
        scale = max(1.0, chi2 / dof) if dof > 0 else 1.0
        slope_err, method = float(np.sqrt(cov[0, 0] * scale)), "weighted"
    else:
        coef, *_ = np.linalg.lstsq(a, ly, rcond=None)
        if dof > 0:
            resid = ly - a @ coef
            slope_err = float(np.sqrt(np.sum(resid**2) / dof / np.sum((ln - ln.mean()) ** 2)))
            method = "residuals"
        else:
            slope_err, method = float("nan"), "none"
    return ScalingFit(nu=Estimate(float(coef[0]) / 2, slope_err / 2, float(ln.size)), prefactor=float(np.exp(coef[1])),
                      n_range=(float(n[sel].min()), float(n[sel].max())), n_points=int(ln.size), error_method=method)


def scaling_with_length(results: Sequence[ChainDimensions]) -> ChainScaling:
    """Chain size against the number of bonds N over several sets of chains, and the Flory exponent nu.

    Parameters
    ----------
    results : sequence of ChainDimensions
        One per chain length (from :func:`chain_dimensions`); all chains of a set must have the same length.

    Returns
    -------
    ChainScaling
        <Ree^2>/N and <Rg^2>/N against N, and nu from log-log fits of <Ree^2> and <Rg^2> against N (weighted
        by their errors).  For finite chains <Rg^2> is not an exact power of N (ideal chains:
        b^2 N (N + 2) / (6 (N + 1))), so ``nu_rg`` approaches nu from below as N grows.
    """
    results = list(results)
    if len(results) < 2:
        raise TrajectoryError(f"scaling_with_length needs at least 2 sets of chains of different length, got "
                              f"{len(results)}")
    n_bonds = []
    for i, r in enumerate(results):
        if not isinstance(r, ChainDimensions):
            raise TrajectoryError(f"result {i} is a {type(r).__name__}, expected ChainDimensions (chain_dimensions)")
        lengths = np.unique(r.n_beads)
        if lengths.size != 1:
            raise TrajectoryError(f"result {i} mixes chain lengths ({', '.join(map(str, lengths))} beads); "
                                  f"scaling_with_length needs one length per set")
        n_bonds.append(int(lengths[0]) - 1)
    if len(set(n_bonds)) != len(n_bonds):
        raise TrajectoryError(f"the sets must have different chain lengths, got {n_bonds} bonds")
    order = np.argsort(n_bonds)
    res = [results[i] for i in order]
    n = np.array(n_bonds)[order]
    ree2 = np.array([r.ree2.value for r in res])
    ree2_err = np.array([r.ree2.error for r in res])
    rg2 = np.array([r.rg2.value for r in res])
    rg2_err = np.array([r.rg2.error for r in res])
    return ChainScaling(n_bonds=n, ree2=ree2, ree2_err=ree2_err, rg2=rg2, rg2_err=rg2_err,
                        ratio=np.array([r.ratio.value for r in res]),
                        nu_ree=fit_scaling_exponent(n, ree2, ree2_err), nu_rg=fit_scaling_exponent(n, rg2, rg2_err))


def internal_distances(positions, chains, box=None, *, fit_range: tuple[float, float] | None = None,
                       n_blocks: int = 5) -> InternalDistances:
    """Mean-square internal distances <R^2(n)> = <(r_{i+n} - r_i)^2> over all segments of n bonds.

    The standard "internal distance" plot is ``r2_per_n`` against ``n``: flat at b^2 C_inf for ideal chains (exactly
    b^2 for a random walk of bond length b), rising as n^(2 nu - 1) for swollen chains.

    Parameters
    ----------
    positions, chains, box
        As :func:`chain_dimensions`; chains may differ in length (each n pools the segments of all chains long
        enough).
    fit_range : (n_min, n_max), optional
        Segment lengths (bonds) for the exponent fit (all if omitted).
    n_blocks : int
        Blocks of frames for the errors.
    """
    _check_blocks(n_blocks)
    x, ch, boxes = _prepare(positions, chains, box, what="internal_distances")
    n_frames = x.shape[0]
    n_max = int(ch.lengths.max()) - 1
    frame_sum = np.zeros((n_frames, n_max))
    counts = np.zeros(n_max, dtype=np.int64)
    chain_mean = np.full((ch.n_chains, n_max), np.nan)
    for ids, idx in ch.groups():
        u = _whole(x, idx, boxes)
        for s in range(1, idx.shape[1]):
            d2 = np.sum((u[:, :, s:] - u[:, :, :-s]) ** 2, axis=-1).mean(axis=2)   # (F, C_g)
            frame_sum[:, s - 1] += d2.sum(axis=1) * (idx.shape[1] - s)
            counts[s - 1] += idx.shape[0] * (idx.shape[1] - s)
            chain_mean[ids, s - 1] = d2.mean(axis=0)
    per_frame = frame_sum / counts
    r2 = per_frame.mean(axis=0)
    errs = [_error(per_frame[:, s], chain_mean[:, s], n_blocks) for s in range(n_max)]
    r2_err = np.array([e[0] for e in errs])
    n = np.arange(1, n_max + 1)
    return InternalDistances(n=n, r2=r2, r2_err=r2_err, n_segments=counts,
                             fit=fit_scaling_exponent(n, r2, r2_err, n_range=fit_range),
                             error_method=errs[0][1])


# --------------------------------------------------------------------------------------
# Bonded geometry along the chain
# --------------------------------------------------------------------------------------
_KINDS = {"bond": (2, compute_bonds, "nm"), "angle": (3, compute_angles, "rad"),
          "torsion": (4, compute_dihedrals, "rad")}


def along_chain(positions, chains, box=None, *, kind: str = "bond", n_blocks: int = 5) -> AlongChain:
    """Bond lengths, bond angles or torsions indexed by position along equal-length chains.

    Computed with :func:`~openmm_cgml.analysis.distributions.compute_bonds`, ``compute_angles`` and
    ``compute_dihedrals`` (minimum-image vectors with ``box``), so that the ends can be compared with the middle.

    Parameters
    ----------
    positions, chains, box
        As :func:`chain_dimensions`; all chains must have the same number of beads (at least 2, 3 or 4).
    kind : {"bond", "angle", "torsion"}
    n_blocks : int
        Blocks of frames for the errors.
    """
    _check_blocks(n_blocks)
    if kind not in _KINDS:
        raise TrajectoryError(f"kind must be 'bond', 'angle' or 'torsion', got {kind!r}")
    width, compute, unit = _KINDS[kind]
    x, ch, _ = _prepare(positions, chains, None, min_beads=width, equal_length=True,
                        what=f"along_chain(kind={kind!r})")
    idx = ch.array()
    n_pos = idx.shape[1] - width + 1
    tuples = np.stack([idx[:, i:i + n_pos] for i in range(width)], axis=-1)     # (C, n_pos, width)
    values = compute(x, tuples.reshape(-1, width), box).reshape(x.shape[0], idx.shape[0], n_pos)
    mean, err, std = np.empty(n_pos), np.empty(n_pos), np.empty(n_pos)
    method = "none"
    for i in range(n_pos):
        v = values[:, :, i]
        if kind == "torsion":
            s, c = np.sin(v), np.cos(v)
            ms, mc = float(s.mean()), float(c.mean())
            es, method, _ = _error(s.mean(axis=1), s.mean(axis=0), n_blocks)
            ec, _, _ = _error(c.mean(axis=1), c.mean(axis=0), n_blocks)
            r2 = ms**2 + mc**2
            mean[i] = math.atan2(ms, mc)
            err[i] = math.sqrt((mc * es) ** 2 + (ms * ec) ** 2) / r2 if r2 > 0 else float("nan")
            std[i] = math.sqrt(-2.0 * math.log(min(max(math.sqrt(r2), 1e-300), 1.0)))
        else:
            mean[i], std[i] = float(v.mean()), float(v.std())
            err[i], method, _ = _error(v.mean(axis=1), v.mean(axis=0), n_blocks)
    return AlongChain(kind=kind, unit=unit, position=np.arange(n_pos), values=values, mean=mean, mean_err=err,
                      std=std, error_method=method)


def intra_chain_distribution(positions, chains, box=None, *, min_separation: int = 3, bins: int = 100,
                             r_max: float | None = None, n_blocks: int = 5) -> IntraChainDistribution:
    """Histogram of distances between beads of the same chain at least ``min_separation`` bonds apart.

    Normalised per chain (see :class:`IntraChainDistribution`), not against a bulk density.

    Parameters
    ----------
    positions, chains, box
        As :func:`chain_dimensions`; chains may differ in length.
    min_separation : int
        Smallest separation along the chain, in bonds, of the pairs counted (>= 1; 3 leaves out bonded and
        angle partners).
    bins : int
    r_max : float, optional
        Upper edge, nm (the largest distance found if omitted); pairs beyond are counted in ``n_pairs_outside``.
    n_blocks : int
        Blocks of frames for the errors.
    """
    _check_blocks(n_blocks)
    if int(min_separation) != min_separation or min_separation < 1:
        raise TrajectoryError(f"min_separation must be a whole number of bonds >= 1, got {min_separation}")
    min_separation = int(min_separation)
    if bins < 1:
        raise TrajectoryError(f"bins must be at least 1, got {bins}")
    x, ch, boxes = _prepare(positions, chains, box, min_beads=min_separation + 1,
                            what=f"intra_chain_distribution(min_separation={min_separation})")
    n_frames = x.shape[0]
    groups = [(ids, idx, np.triu_indices(idx.shape[1], k=min_separation)) for ids, idx in ch.groups()]

    def _distances():
        for _, idx, (ii, jj) in groups:
            per_frame = idx.shape[0] * ii.size
            step = max(1, _PAIR_CHUNK // max(per_frame, 1))
            for f0 in range(0, n_frames, step):
                u = _whole(x[f0:f0 + step], idx, None if boxes is None else boxes[f0:f0 + step])
                yield f0, np.linalg.norm(u[:, :, jj] - u[:, :, ii], axis=-1)        # (f, C_g, P)

    if r_max is None:
        r_max = max(float(d.max()) for _, d in _distances()) * (1 + 1e-9)
    if not r_max > 0:
        raise TrajectoryError(f"r_max must be positive, got {r_max}")
    edges = np.linspace(0.0, float(r_max), bins + 1)
    counts = np.zeros((n_frames, bins))
    outside, sum_r2, n_pairs = 0, 0.0, 0
    for f0, d in _distances():
        f = d.shape[0]
        sum_r2 += float(np.sum(d**2))
        n_pairs += d.size
        b = np.floor(d / (r_max / bins)).astype(np.int64)
        inside = b < bins
        outside += int(np.count_nonzero(~inside))
        frame = np.broadcast_to(np.arange(f)[:, None, None], d.shape)
        counts[f0:f0 + f] += np.bincount((frame[inside] * bins + b[inside]), minlength=f * bins).reshape(f, bins)
    width = np.diff(edges)
    per_frame = counts / (ch.n_chains * width)                       # pairs per chain per nm, each frame
    pairs_per_chain = per_frame.mean(axis=0)
    nb = min(n_blocks, n_frames)
    if nb >= 2:
        blocks = np.array([b.mean(axis=0) for b in np.array_split(per_frame, nb)])
        err = blocks.std(axis=0, ddof=1) / np.sqrt(nb)
    else:
        err = np.full(bins, np.nan)
    n_pairs_per_chain = n_pairs / (n_frames * ch.n_chains)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    shell_density = 2.0 * counts.sum(axis=0) / (n_frames * ch.lengths.sum() * shell)
    return IntraChainDistribution(edges=edges, centers=0.5 * (edges[1:] + edges[:-1]), pairs_per_chain=pairs_per_chain,
                                  pairs_per_chain_err=err, probability=pairs_per_chain / n_pairs_per_chain,
                                  shell_density=shell_density, n_pairs_per_chain=float(n_pairs_per_chain),
                                  n_pairs_outside=outside, mean_square_distance=sum_r2 / n_pairs,
                                  min_separation=min_separation, n_frames=n_frames, n_chains=ch.n_chains)


# --------------------------------------------------------------------------------------
# Relaxation
# --------------------------------------------------------------------------------------
def _threshold_label(threshold: float) -> str:
    return "1/e" if abs(threshold - DECAY_THRESHOLD) < 1e-12 else f"{threshold:.3g}"


def _check_correlation_args(threshold: float, fit_floor: float) -> None:
    if not 0 < threshold < 1:
        raise TrajectoryError(f"threshold must lie strictly between 0 and 1 (default 1/e), got {threshold}")
    if not 0 <= fit_floor < 1:
        raise TrajectoryError(f"fit_floor must lie in [0, 1), got {fit_floor}")


def _max_lag(max_lag: int | None, n_frames: int) -> int:
    if n_frames < 2:
        raise TrajectoryError("an autocorrelation needs at least 2 frames")
    max_lag = max(1, n_frames // 2) if max_lag is None else int(max_lag)
    if not 1 <= max_lag < n_frames:
        raise TrajectoryError(f"max_lag must be between 1 and n_frames - 1 = {n_frames - 1}, got {max_lag}")
    return max_lag


def _kww_fit(t: np.ndarray, c: np.ndarray, guess: float) -> tuple[float, float]:
    from scipy.optimize import OptimizeWarning, curve_fit

    def kww(tt, tau, beta):
        return np.exp(-((tt / tau) ** beta))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            (tau, beta), _ = curve_fit(kww, t, c, p0=(guess, 1.0), bounds=([t[0] * 1e-3, 0.05], [np.inf, 2.0]),
                                       max_nfev=2000)
    except (RuntimeError, ValueError):
        return float("nan"), float("nan")
    return float(tau), float(beta)


def _relaxation(kind: str, t: np.ndarray, c: np.ndarray, err: np.ndarray, mean_square: float, *, threshold: float,
                fit: bool, fit_floor: float) -> ChainCorrelation:
    """Integral time, KWW fit and decay flag of a normalised correlation C(t)."""
    crossing = np.flatnonzero(c[1:] <= 0)
    if crossing.size:
        i = int(crossing[0]) + 1                      # c[i] <= 0 < c[i - 1]
        t0 = t[i - 1] + (t[i] - t[i - 1]) * c[i - 1] / (c[i - 1] - c[i])
        tt, cc = np.r_[t[:i], t0], np.r_[c[:i], 0.0]
    else:
        tt, cc = t, c
    tau_int = float(np.sum(0.5 * (cc[1:] + cc[:-1]) * np.diff(tt)))
    below = np.flatnonzero(c[1:] < threshold)
    decayed = bool(below.size)
    decay_time = float(t[below[0] + 1]) if decayed else None
    tau_kww = beta_kww = tau_mean = float("nan")
    if fit:
        stop = np.flatnonzero((c[1:] <= fit_floor) | (c[1:] <= 0))
        end = int(stop[0]) + 1 if stop.size else c.size
        if end - 1 >= 3:
            tau_kww, beta_kww = _kww_fit(t[1:end], c[1:end], tau_int if tau_int > 0 else float(t[end - 1]))
            if np.isfinite(tau_kww):
                tau_mean = tau_kww / beta_kww * math.gamma(1.0 / beta_kww)
    label = _threshold_label(threshold)
    kww_text = f", KWW tau = {tau_kww:.3g} ps, beta = {beta_kww:.2f}" if np.isfinite(tau_kww) else ""
    if decayed:
        message = (f"{kind} autocorrelation decayed below {label} at t = {decay_time:.4g} ps "
                   f"(tau_integral = {tau_int:.3g} ps{kww_text})")
    else:
        message = (f"{kind} autocorrelation has not decayed: C(t_max)={c[-1]:.2g} > {label} at t_max = {t[-1]:.4g} ps; "
                   f"the reference is not relaxed (tau_integral = {tau_int:.3g} ps is a lower bound; run longer)")
        logger.warning(message)
    return ChainCorrelation(kind=kind, lag_times=t, correlation=c, correlation_err=err, mean_square=mean_square,
                            tau_integral=tau_int, integral_limit=float(tt[-1]), tau_kww=tau_kww, beta_kww=beta_kww,
                            tau_kww_mean=tau_mean, decayed=decayed, decay_time=decay_time, threshold=threshold,
                            message=message)


def _per_chain_acf(vectors: np.ndarray, chain_of: np.ndarray, n_chains: int, max_lag: int) -> np.ndarray:
    """Sum over each chain's vectors of the all-origins autocorrelation, (max_lag + 1, n_chains), nm^2."""
    n_frames, m = vectors.shape[:2]
    acf = np.empty((max_lag + 1, m))
    chunk = max(1, _CHUNK_ELEMENTS // (_fft_size(n_frames) * 3))
    for s in range(0, m, chunk):
        acf[:, s:s + chunk] = autocorrelation_fft(vectors[:, s:s + chunk])[: max_lag + 1]
    order = np.argsort(chain_of, kind="stable")
    owners, starts = np.unique(chain_of[order], return_index=True)
    out = np.zeros((max_lag + 1, n_chains))
    out[:, owners] = np.add.reduceat(acf[:, order], starts, axis=1)
    return out


def _vector_correlation(kind: str, vectors: np.ndarray, chain_of: np.ndarray, n_chains: int, lag_times: np.ndarray,
                        *, threshold: float, fit: bool, fit_floor: float) -> ChainCorrelation:
    s = _per_chain_acf(vectors, chain_of, n_chains, lag_times.size - 1)
    norm = s[0].mean()
    if not norm > 0:
        raise TrajectoryError(f"the {kind} vectors are all zero; their autocorrelation is undefined")
    c = s.mean(axis=1) / norm
    err = s.std(axis=1, ddof=1) / np.sqrt(n_chains) / norm if n_chains > 1 else np.full(c.size, np.nan)
    return _relaxation(kind, lag_times, c, err, float(norm * n_chains / vectors.shape[1]), threshold=threshold,
                       fit=fit, fit_floor=fit_floor)


def bond_autocorrelation(positions, chains, times, *, box=None, max_lag: int | None = None,
                         threshold: float = DECAY_THRESHOLD, fit: bool = True, fit_floor: float = 0.05
                         ) -> ChainCorrelation:
    """Bond-vector autocorrelation <b(t) . b(0)> / <b^2>, all time origins (FFT), averaged over bonds and chains.

    Parameters
    ----------
    positions, chains, box
        As :func:`chain_dimensions` (bond vectors are minimum images with ``box``); chains may differ in length.
    times : array (n_frames,)
        ps, evenly spaced.
    max_lag : int, optional
        Longest lag in frames (half the trajectory if omitted).
    threshold : float
        ``decayed`` is True only if C fell below it within the computed lags (default 1/e).
    fit : bool
        Fit a stretched exponential (KWW) as well as the integral time.
    fit_floor : float
        The KWW fit uses the lags before C first drops to ``fit_floor`` (the noisy tail is left out).

    Returns
    -------
    ChainCorrelation
    """
    _check_correlation_args(threshold, fit_floor)
    x, ch, boxes = _prepare(positions, chains, box, what="bond_autocorrelation")
    t = as_times(times, x.shape[0])
    max_lag = _max_lag(max_lag, x.shape[0])
    vecs, owner = [], []
    for ids, idx in ch.groups():
        b = np.diff(x[:, idx], axis=2)
        if boxes is not None:
            b = minimum_image(b, boxes)
        vecs.append(b.reshape(x.shape[0], -1, 3))
        owner.append(np.repeat(ids, idx.shape[1] - 1))
    return _vector_correlation("bond", np.concatenate(vecs, axis=1), np.concatenate(owner), ch.n_chains,
                               t[: max_lag + 1] - t[0], threshold=threshold, fit=fit, fit_floor=fit_floor)


def end_to_end_autocorrelation(positions, chains, times, *, box=None, max_lag: int | None = None,
                               threshold: float = DECAY_THRESHOLD, fit: bool = True, fit_floor: float = 0.05
                               ) -> ChainCorrelation:
    """End-to-end vector autocorrelation <R(t) . R(0)> / <R^2>, all time origins (FFT), averaged over chains.

    Its decay time is the longest relaxation time of a chain; ``decayed`` False (with the message
    "end-to-end autocorrelation has not decayed: ...") says a polymer reference is not relaxed.  Parameters as
    :func:`bond_autocorrelation`.
    """
    _check_correlation_args(threshold, fit_floor)
    x, ch, boxes = _prepare(positions, chains, box, what="end_to_end_autocorrelation")
    t = as_times(times, x.shape[0])
    max_lag = _max_lag(max_lag, x.shape[0])
    ree = np.empty((x.shape[0], ch.n_chains, 3))
    for ids, idx in ch.groups():
        u = _whole(x, idx, boxes)
        ree[:, ids] = u[:, :, -1] - u[:, :, 0]
    return _vector_correlation("end-to-end", ree, np.arange(ch.n_chains), ch.n_chains, t[: max_lag + 1] - t[0],
                               threshold=threshold, fit=fit, fit_floor=fit_floor)


# --------------------------------------------------------------------------------------
# Centre-of-mass diffusion
# --------------------------------------------------------------------------------------
def _loglog_slope(t: np.ndarray, y: np.ndarray, window: tuple[float, float], n_points: int = 50) -> float:
    sel = np.flatnonzero((t >= window[0] * (1 - 1e-9)) & (t <= window[1] * (1 + 1e-9)) & (t > 0) & (y > 0))
    if sel.size < 2:
        return float("nan")
    sel = sel[np.unique(np.geomspace(1, sel.size, n_points).astype(int) - 1)]
    if sel.size < 2:
        return float("nan")
    return float(np.polyfit(np.log(t[sel]), np.log(y[sel]), 1)[0])


def classify_msd(lag_times, msd, *, tolerance: float = 0.1, min_span: float = 3.0, subdiffusive_below: float = 0.8,
                 n_points: int = 40) -> MSDRegime:
    """Classify an MSD curve as diffusive, sub-diffusive, super-diffusive or undetermined.

    Diffusive only where :func:`openmm_cgml.analysis.msd.diffusive_regime` finds a window with
    abs(d ln MSD / d ln t - 1) < ``tolerance`` spanning a factor ``min_span`` in time; otherwise the exponent over
    the last factor ``min_span`` of lags decides (see :class:`MSDRegime`).  The longest run of local slopes below
    ``subdiffusive_below`` is reported as the sub-diffusive range with its exponent either way.

    Parameters
    ----------
    lag_times : array (n_lags,)
        ps.
    msd : array (n_lags,)
        nm^2.
    """
    t = np.asarray(lag_times, dtype=np.float64)
    y = np.asarray(msd, dtype=np.float64)
    if t.ndim != 1 or t.shape != y.shape:
        raise TrajectoryError(f"lag_times and msd must be 1-D of equal length, got {t.shape} and {y.shape}")
    if not 0 < subdiffusive_below < 1:
        raise TrajectoryError(f"subdiffusive_below must lie between 0 and 1, got {subdiffusive_below}")
    regime = diffusive_regime(t, y, tolerance=tolerance, min_span=min_span, n_points=n_points)
    lt, slope = regime.lag_times, regime.local_slope
    sub_window = sub_exp = None
    best, start = 0.0, None
    for i, flag in enumerate(np.r_[slope < subdiffusive_below, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if i - start >= 3 and np.log(lt[i - 1] / lt[start]) > best:
                best, sub_window = np.log(lt[i - 1] / lt[start]), (float(lt[start]), float(lt[i - 1]))
            start = None
    if sub_window is not None:
        sub_exp = _loglog_slope(t, y, sub_window)
    window = regime.window
    exponent = _loglog_slope(t, y, window)
    where = f"over {window[0]:.3g}-{window[1]:.3g} ps"
    if regime.found:
        kind = "diffusive"
        lo, hi = regime.slope_range(window)
        reason = f"diffusive: MSD ~ t^{exponent:.2f} {where} (local slope {lo:.2f}-{hi:.2f})"
    elif exponent < subdiffusive_below:
        kind = "sub-diffusive"
        reason = (f"sub-diffusive: MSD ~ t^{exponent:.2f} {where}; no diffusive window (|slope - 1| < {tolerance:g} "
                  f"over a factor {min_span:g} in time), so D is not fitted")
    elif exponent > 1 + tolerance:
        kind = "super-diffusive"
        reason = (f"super-diffusive (ballistic or drifting): MSD ~ t^{exponent:.2f} {where}; no diffusive window, "
                  f"so D is not fitted")
    else:
        kind = "undetermined"
        reason = (f"no diffusive window: MSD ~ t^{exponent:.2f} {where}, but |slope - 1| < {tolerance:g} does not hold "
                  f"over a factor {min_span:g} in time; D is not fitted (run longer)")
    return MSDRegime(regime=kind, exponent=exponent, window=window, subdiffusive_exponent=sub_exp,
                     subdiffusive_window=sub_window, lag_times=lt, local_slope=slope, reason=reason,
                     tolerance=tolerance, min_span=min_span, subdiffusive_below=subdiffusive_below)


def chain_com_msd(positions, chains, times, *, box=None, masses=None, remove_com: bool = True,
                  max_lag: int | None = None, n_blocks: int = 5, tolerance: float = 0.1, min_span: float = 3.0,
                  subdiffusive_below: float = 0.8) -> ChainMSD:
    """MSD of the chain centres of mass, its regime, and D only where it is diffusive.

    The particles are unwrapped across frames (:func:`openmm_cgml.analysis.msd.unwrap_positions`: each step
    taken as its minimum image), each chain is made whole through its bonds, and the MSD of the (mass-weighted)
    centres of mass is computed with :func:`openmm_cgml.analysis.msd.compute_msd`.  The curve is classified by
    :func:`classify_msd`; D (:func:`openmm_cgml.analysis.msd.diffusion_coefficient`) is fitted over the diffusive
    window only, never on a sub-diffusive range (then ``diffusion`` is None and ``reason`` says why).

    Parameters
    ----------
    positions, chains, box, masses
        As :func:`chain_dimensions`; chains may differ in length.
    times : array (n_frames,)
        ps, evenly spaced.
    remove_com : bool
        Subtract the drift of the centre of mass of all chains.
    max_lag, n_blocks
        As :func:`openmm_cgml.analysis.msd.compute_msd`.
    tolerance, min_span, subdiffusive_below
        As :func:`classify_msd`.
    """
    x, ch, boxes = _prepare(positions, chains, box, min_beads=1, what="chain_com_msd")
    w = _weights(masses, x.shape[1])
    if boxes is not None:
        x = unwrap_positions(x, boxes)
    com = np.empty((x.shape[0], ch.n_chains, 3))
    chain_mass = np.empty(ch.n_chains)
    for ids, idx in ch.groups():
        wc = w[idx]
        chain_mass[ids] = wc.sum(axis=1)
        if np.any(chain_mass[ids] <= 0):
            raise TrajectoryError(f"chain {int(ids[np.argmax(chain_mass[ids] <= 0)])} has zero total mass")
        com[:, ids] = np.einsum("fcni,cn->fci", _whole(x, idx, boxes), wc) / chain_mass[ids][None, :, None]
    msd = compute_msd(com, times, masses=chain_mass, remove_com=remove_com, max_lag=max_lag, n_blocks=n_blocks)
    regime = classify_msd(msd.lag_times, msd.msd, tolerance=tolerance, min_span=min_span,
                          subdiffusive_below=subdiffusive_below)
    if not regime.diffusive:
        logger.warning("chain centre-of-mass MSD: %s", regime.reason)
        return ChainMSD(msd=msd, regime=regime, diffusion=None, reason=regime.reason)
    diffusion = diffusion_coefficient(msd, fit_range=regime.window, tolerance=tolerance, min_span=min_span)
    return ChainMSD(msd=msd, regime=regime, diffusion=diffusion, reason=diffusion.reason)


# --------------------------------------------------------------------------------------
# Rouse modes
# --------------------------------------------------------------------------------------
def rouse_theory(n_beads: int, spring_constant: float, friction: float, kT: float, modes=None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Relaxation times and amplitudes of the Rouse modes of a free discrete Rouse chain.

    For N beads joined by harmonic springs of constant k, bead friction zeta and temperature kT, the modes
    X_p = (1/N) sum_n r_n cos(p pi (n - 1/2) / N) diagonalise the free-end connectivity matrix (eigenvalues
    4 sin^2(p pi / 2N)), so that each is an Ornstein-Uhlenbeck process with

    * tau_p = zeta / (4 k sin^2(p pi / 2N)) and
    * <X_p . X_p> = 3 kT / (8 N k sin^2(p pi / 2N)) (kT / (8 N k sin^2(...)) per Cartesian component).

    Parameters
    ----------
    n_beads : int
    spring_constant : float
        k, kJ/mol/nm^2.
    friction : float
        zeta, kJ/mol ps/nm^2 (so that zeta / k is in ps).
    kT : float
        kJ/mol.
    modes : array of int, optional
        Mode numbers (1..N-1; all if omitted).

    Returns
    -------
    tau_p : ndarray
        ps.
    amplitude2 : ndarray
        <X_p . X_p>, nm^2.
    """
    p = _modes(modes, int(n_beads))
    s2 = np.sin(p * np.pi / (2 * n_beads)) ** 2
    return friction / (4 * spring_constant * s2), 3 * kT / (8 * n_beads * spring_constant * s2)


def _modes(modes, n_beads: int) -> np.ndarray:
    if n_beads < 2:
        raise TrajectoryError(f"Rouse modes need chains of at least 2 beads, got {n_beads}")
    p = np.arange(1, n_beads) if modes is None else np.atleast_1d(np.asarray(modes))
    if p.size == 0 or p.dtype.kind not in "iu" or p.min() < 1 or p.max() > n_beads - 1:
        raise TrajectoryError(f"modes must be integers in 1..{n_beads - 1} for chains of {n_beads} beads, got {modes}")
    return p.astype(np.int64)


def rouse_modes(positions, chains, times, *, box=None, modes=None, max_lag: int | None = None,
                threshold: float = DECAY_THRESHOLD, fit: bool = True, fit_floor: float = 0.05,
                n_blocks: int = 5) -> RouseModes:
    """Rouse modes of equal-length chains, their amplitudes <X_p . X_p> and autocorrelations.

    X_p(t) = (1/N) sum_{n=1}^{N} r_n(t) cos(p pi (n - 1/2) / N), p = 1..N-1, with r_n the positions of the
    chain made whole (modes p >= 1 do not depend on where the chain is); C_p(t) = <X_p(t) . X_p(0)> / <X_p^2>
    over all time origins (FFT) and chains, with tau_p from the integral and a KWW fit as in
    :func:`bond_autocorrelation`.  For Rouse chains <X_p . X_p> and tau_p fall as 1/p^2 for p << N
    (:func:`rouse_theory`).

    Parameters
    ----------
    positions, chains, box
        As :func:`chain_dimensions`; all chains must have the same number of beads (>= 2).
    times : array (n_frames,)
        ps, evenly spaced.
    modes : array of int, optional
        Mode numbers (all 1..N-1 if omitted).
    max_lag, threshold, fit, fit_floor
        As :func:`bond_autocorrelation`.
    n_blocks : int
        Blocks of frames for the errors of <X_p . X_p>.
    """
    _check_blocks(n_blocks)
    _check_correlation_args(threshold, fit_floor)
    x, ch, boxes = _prepare(positions, chains, box, equal_length=True, what="rouse_modes")
    t = as_times(times, x.shape[0])
    max_lag = _max_lag(max_lag, x.shape[0])
    idx = ch.array()
    n = idx.shape[1]
    p = _modes(modes, n)
    basis = np.cos(np.pi * p[:, None] * (np.arange(1, n + 1)[None, :] - 0.5) / n) / n       # (n_modes, N)
    xp = np.moveaxis(np.tensordot(_whole(x, idx, boxes), basis, axes=([2], [1])), 3, 2)      # (F, C, n_modes, 3)
    amp = np.sum(xp**2, axis=-1)                                                              # (F, C, n_modes)
    amplitude2, amplitude2_err, method = np.empty(p.size), np.empty(p.size), "none"
    for k in range(p.size):
        est, method = _mean_estimate(amp[:, :, k], n_blocks)
        amplitude2[k], amplitude2_err[k] = est.value, est.error
    lags = t[: max_lag + 1] - t[0]
    owner = np.arange(ch.n_chains)
    correlations = tuple(_vector_correlation(f"Rouse mode {int(q)}", xp[:, :, k], owner, ch.n_chains, lags,
                                             threshold=threshold, fit=fit, fit_floor=fit_floor)
                         for k, q in enumerate(p))
    return RouseModes(p=p, n_beads=n, amplitude2=amplitude2, amplitude2_err=amplitude2_err, correlations=correlations,
                      error_method=method)
