"""Training data: a CG dataset's frames as tensors, the time-block split, and cached neighbour pairs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..dataset import Dataset, open_dataset, open_h5, read_header, recorded_temperature, stored_fields
from ..exceptions import ConfigurationError, DatasetError
from ..topology import CGTopology
from .config import PAIR_MARGIN

__all__ = ["ForceData", "check_force_dataset", "load_force_data", "combine_force_data", "load_force_data_at",
           "time_block_split", "PairCache"]


@dataclass(frozen=True)
class ForceData:
    """Frames of a CG dataset as tensors: positions/forces (F, N, 3), boxes (F, 3, 3) or None."""

    positions: torch.Tensor
    forces: torch.Tensor
    boxes: torch.Tensor | None
    topology: CGTopology
    temperature: torch.Tensor | None = None
    source: str = ""
    metadata: dict = field(default_factory=dict)
    #: Frames of each dataset the data joins, in order (one entry for a single dataset): the time-block split
    #: splits each run on its own, so no validation block straddles two runs.
    segments: tuple[int, ...] = ()

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def temperatures(self) -> list[float]:
        """The distinct temperatures (K) of the frames, sorted (empty without temperatures)."""
        if self.temperature is None:
            return []
        return sorted({round(float(t), 6) for t in self.temperature.tolist()})


def check_force_dataset(dataset, *, max_frames: int | None = None) -> None:
    """Check, from the file's header alone (no array is read), that force matching can use ``dataset`` (path
    or :class:`Dataset`): coarse-grained, with forces, at least two frames.  Cheap: run before any other work.

    Raises
    ------
    DatasetError
        Naming the file and what it holds instead.
    """
    if isinstance(dataset, Dataset):
        _require_force_data(dataset.path, dataset.kind, dataset.fields, dataset.n_frames, max_frames)
        return
    with open_h5(dataset) as f:
        kind, _, _, n_frames = read_header(f)
        _require_force_data(dataset, kind, stored_fields(f), n_frames, max_frames)


def _require_force_data(path, kind: str, fields, n_frames: int, max_frames: int | None) -> None:
    if kind != "coarse-grained":
        raise DatasetError(
            f"{path} holds {kind!r} data; force matching needs a coarse-grained dataset "
            "(map the all-atom data first: cgml map, or openmm_cgml.mapping.map_dataset)"
        )
    if "forces" not in fields:
        raise DatasetError(f"{path} stores no forces ({tuple(fields)}); force matching needs mapped forces")
    n = n_frames if max_frames is None else min(n_frames, int(max_frames))
    if n < 2:
        raise DatasetError(f"{path} has {n_frames} frames; force matching needs at least 2")


def load_force_data(dataset, *, temperature=None, max_frames: int | None = None, dtype=torch.float32) -> ForceData:
    """Read a coarse-grained dataset (path or :class:`Dataset`) for force matching.

    Raises
    ------
    DatasetError
        Not coarse-grained data, no forces, or NaN/inf in positions or forces (the
        message names the first bad frames).
    """
    ds: Dataset = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
    check_force_dataset(ds, max_frames=max_frames)
    n = ds.n_frames if max_frames is None else min(ds.n_frames, int(max_frames))
    for name, arr in (("forces", ds.forces[:n]), ("positions", ds.positions[:n])):
        bad = ~np.isfinite(arr).all(axis=(1, 2))
        if bad.any():
            frames = np.nonzero(bad)[0]
            raise DatasetError(
                f"{ds.path} has non-finite {name} (NaN or inf) in {len(frames)} frame(s), first {frames[:5].tolist()}; "
                "remove those frames or regenerate the data"
            )
    box = ds.box[:n]
    periodic = bool(np.any(box))
    temp = None
    if temperature is not None:
        temp = torch.as_tensor(np.broadcast_to(np.asarray(temperature, dtype=float), (n,)).copy(), dtype=dtype)
    return ForceData(
        positions=torch.as_tensor(ds.positions[:n], dtype=dtype),
        forces=torch.as_tensor(ds.forces[:n], dtype=dtype),
        boxes=torch.as_tensor(box, dtype=dtype) if periodic else None,
        topology=CGTopology.from_dataset(ds, frame=None),
        temperature=temp,
        source=str(ds.path),
        metadata=dict(ds.metadata),
        segments=(n,),
    )


#: Two temperatures closer than this (K) are the same.
TEMPERATURE_TOLERANCE = 0.05


def load_force_data_at(datasets, *, max_frames: int | None = None, dtype=torch.float32) -> ForceData:
    """Read several coarse-grained datasets, each at its own temperature, as one :class:`ForceData` whose frames
    carry their temperature (the data of a temperature-conditioned model).

    Parameters
    ----------
    datasets : sequence of (path or Dataset, temperature or None)
        Each dataset with the temperature it was recorded at (K, or a unit string); None takes the dataset's own
        (:func:`openmm_cgml.dataset.recorded_temperature`).  A temperature given that disagrees with the one the
        dataset records is refused.
    max_frames : int, optional
        At most this many frames of each dataset.

    Raises
    ------
    DatasetError
        A dataset without a temperature (neither given nor recorded), a temperature given that disagrees with
        the dataset's metadata, or two datasets at the same temperature.
    InvalidMappingError
        Datasets mapped differently (see :func:`combine_force_data`).
    """
    from ..units import to_md

    parts, seen = [], {}
    for item in datasets:
        try:
            path, temperature = item
        except (TypeError, ValueError):
            raise DatasetError(f"each dataset must be given as (path, temperature), got {item!r}") from None
        ds: Dataset = path if isinstance(path, Dataset) else open_dataset(path)
        recorded = recorded_temperature(ds)
        given = None if temperature is None else to_md(temperature, "temperature", name="temperature")
        if given is None and recorded is None:
            raise DatasetError(f"{ds.path} records no temperature (metadata 'temperature_K' or a thermostat): give "
                               "its temperature")
        if given is not None and recorded is not None and abs(given - recorded) > TEMPERATURE_TOLERANCE:
            raise DatasetError(f"{ds.path} is given as data at {given:g} K, but its metadata says it was recorded at "
                               f"{recorded:g} K: check which file belongs to which temperature")
        t = recorded if given is None else given
        if t <= 0:
            raise DatasetError(f"{ds.path}: temperature must be positive, got {t:g} K")
        clash = next((p for p, u in seen.items() if abs(u - t) <= TEMPERATURE_TOLERANCE), None)
        if clash is not None:
            raise DatasetError(f"{ds.path} and {clash} are both at {t:g} K: give one dataset per temperature (join "
                               "replicas into one dataset first)")
        seen[str(ds.path)] = t
        parts.append(load_force_data(ds, temperature=t, max_frames=max_frames, dtype=dtype))
    if not parts:
        raise DatasetError("no datasets given")
    return combine_force_data(parts)


def combine_force_data(parts) -> ForceData:
    """Join :class:`ForceData` of the same CG system (same mapping and bead count) recorded in different runs --
    at different temperatures, or densities -- into one, its ``segments`` the frames of each part.

    Raises
    ------
    InvalidMappingError
        The parts come from different mappings (topology fingerprints) or differ in bead count.
    DatasetError
        Some parts are periodic and others are not, or some carry temperatures and others do not.
    """
    from ..exceptions import InvalidMappingError

    parts = list(parts)
    if not parts:
        raise DatasetError("nothing to combine")
    first = parts[0]
    for p in parts[1:]:
        if p.topology.fingerprint() != first.topology.fingerprint() or p.positions.shape[1] != first.positions.shape[1]:
            raise InvalidMappingError(
                f"{p.source} and {first.source} come from different mappings (fingerprints "
                f"{p.topology.fingerprint()} and {first.topology.fingerprint()}, {p.positions.shape[1]} and "
                f"{first.positions.shape[1]} beads): map every dataset with one mapping and the same molecule counts")
        if (p.boxes is None) != (first.boxes is None):
            raise DatasetError(f"{p.source} and {first.source}: one is periodic and the other is not")
        if (p.temperature is None) != (first.temperature is None):
            raise DatasetError(f"{p.source} and {first.source}: give every dataset a temperature, or none")
    if len(parts) == 1:
        return first
    cat = torch.cat
    return ForceData(
        positions=cat([p.positions for p in parts]), forces=cat([p.forces for p in parts]),
        boxes=None if first.boxes is None else cat([p.boxes for p in parts]), topology=first.topology,
        temperature=None if first.temperature is None else cat([p.temperature for p in parts]),
        source=", ".join(p.source for p in parts),
        metadata={"parts": [{"source": p.source, "frames": p.n_frames,
                             "temperature_K": None if p.temperature is None else float(p.temperature[0])}
                            for p in parts]},
        segments=tuple(n for p in parts for n in (p.segments or (p.n_frames,))))


def time_block_split(n_frames: int, validation_fraction: float = 0.2, n_blocks: int = 10, seed: int = 0,
                     segments=None):
    """Split frame indices into contiguous time blocks; a seeded choice of blocks is the validation set.

    ``segments`` (frames per run, summing to ``n_frames``) splits each run on its own, with the same
    ``validation_fraction`` of each run's blocks (another seed per run), so every run -- every temperature of a
    multi-temperature training -- is validated, and no block joins the end of one run to the start of the next."""
    if not 0 < validation_fraction < 1:
        raise ConfigurationError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if segments is not None and len(segments) > 1:
        if sum(segments) != n_frames or min(segments) < 2:
            raise ConfigurationError(f"segments {list(segments)} must be runs of at least 2 frames summing to "
                                     f"{n_frames}")
        train, val, start = [], [], 0
        for k, n in enumerate(segments):
            t, v = time_block_split(int(n), validation_fraction, n_blocks, seed + 7919 * k)
            train.append(t + start)
            val.append(v + start)
            start += int(n)
        return np.concatenate(train), np.concatenate(val)
    n_blocks = max(2, min(int(n_blocks), n_frames))
    blocks = np.array_split(np.arange(n_frames), n_blocks)
    n_val = max(1, int(round(validation_fraction * n_blocks)))
    chosen = set(np.random.default_rng(seed).choice(n_blocks, size=n_val, replace=False).tolist())
    val = np.concatenate([b for k, b in enumerate(blocks) if k in chosen])
    train = np.concatenate([b for k, b in enumerate(blocks) if k not in chosen])
    return train, val


class PairCache:
    """Neighbour pairs of every frame of a dataset, searched once and reused by every epoch.

    The frames' positions never change during training (only the distances computed from
    them need autograd), so the neighbour search is done once per frame, within the
    model's longest cutoff plus a small ``margin`` (the model still masks each block by its
    own cutoff, so the result equals a fresh search).  :meth:`batch` concatenates the pairs
    of a mini-batch with the global indices ``frame_in_batch * n_beads + i`` that
    ``energy_from_pairs`` expects.

    Parameters
    ----------
    data : ForceData
    cutoff : float
        nm; the model's longest cutoff.
    margin : float
        nm added to the cutoff (guards the float32 rounding of pairs at the cutoff).
    brute_force_max : int
        All-pairs search up to this many beads, cell list above.
    """

    def __init__(self, data: ForceData, cutoff: float, margin: float = PAIR_MARGIN, brute_force_max: int = 1000):
        from ..models.neighbors import neighbor_pairs

        self.cutoff = float(cutoff) + float(margin)
        self.n_beads = int(data.positions.shape[1])
        self.pairs: list[torch.Tensor] = []
        self.shifts: list[torch.Tensor] = []
        for f in range(data.n_frames):
            box = None if data.boxes is None else data.boxes[f]
            pairs, shifts = neighbor_pairs(data.positions[f], self.cutoff, box, brute_force_max)
            self.pairs.append(pairs)
            self.shifts.append(shifts)

    def batch(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pairs (2, P), shifts (P, 3))`` of the frames ``index`` stacked in that order."""
        index = [int(f) for f in np.asarray(index).ravel()]
        pairs = torch.cat([self.pairs[f] + k * self.n_beads for k, f in enumerate(index)], 1)
        shifts = torch.cat([self.shifts[f] for f in index], 0)
        return pairs, shifts
