"""Model bundles: one file with everything needed to run a trained CG model.

A bundle is a ``torch.save`` archive of plain data only (dicts, lists, strings, numbers
and tensors), read back with ``torch.load(weights_only=True)``: no pickled classes, so
it loads without the training code and cannot execute code on load.  Contents::

    format, format_version
    model       {"name": registry name, "args": get_init_args()}   architecture + priors
    state_dict  weights (system-specific buffers removed)
    mapping     {"type_names", "molecules", "molecule_counts", "fingerprint"}
    units       {"positions": "nm", "energy": "kJ/mol", "forces": "kJ/mol/nm", ...}
    training    metadata (configuration, losses, dataset, seed, ...)
    versions    package versions
    checksum    sha256 over all of the above (detects corruption)

Written atomically (temporary file + rename).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_path, package_versions
from .._safety import load_tensor_payload
from ..exceptions import ConfigurationError, CorruptFileError, DatasetError, InvalidMappingError
from ..topology import CGTopology
from .registry import build_model

__all__ = ["BUNDLE_FORMAT", "BUNDLE_VERSION", "ModelBundle", "save_bundle", "load_bundle", "bundle_from_model"]

logger = logging.getLogger(__name__)

BUNDLE_FORMAT = "openmm_cgml.model_bundle"
BUNDLE_VERSION = 1
UNITS = {"positions": "nm", "box": "nm", "energy": "kJ/mol", "forces": "kJ/mol/nm", "temperature": "K",
         "cutoff": "nm", "sigma": "nm", "bond_k": "kJ/mol/nm**2", "angle": "rad", "angle_k": "kJ/mol/rad**2"}


def _topology(topology) -> CGTopology:
    if not isinstance(topology, CGTopology):
        raise ConfigurationError(f"expected a CGTopology (openmm_cgml.CGTopology), got {type(topology).__name__}")
    return topology


def _checksum(payload: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    meta = {k: payload[k] for k in sorted(payload) if k not in ("state_dict", "checksum")}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for key in sorted(payload["state_dict"]):
        h.update(key.encode())
        h.update(payload["state_dict"][key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ModelBundle:
    """A loaded bundle (plain data); :meth:`build_model` makes the torch module."""

    model_config: dict
    state_dict: dict
    mapping: dict
    units: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def type_names(self) -> list[str]:
        return list(self.mapping["type_names"])

    @property
    def fingerprint(self) -> str:
        return str(self.mapping["fingerprint"])

    @property
    def cutoff(self) -> float:
        """The model's longest interaction range (nm): its ``cutoff`` (:class:`~openmm_cgml.models.CGModel`
        contract), priors included."""
        if "_cutoff" not in self.__dict__:  # built once (weights not needed): the architecture knows its range
            object.__setattr__(self, "_cutoff", float(build_model(self.model_config).cutoff))
        return self.__dict__["_cutoff"]

    def check_mapping(self, topology: CGTopology, *, strict: bool = True) -> None:
        """Raise :class:`InvalidMappingError` unless ``topology`` uses this bundle's mapping.

        ``strict`` compares the fingerprint (bead types and each molecule's bead-type
        sequence); otherwise it only requires every bead type to be known to the model.
        """
        top = _topology(topology)
        where = f"the model bundle {self.path}" if self.path else "the model bundle"
        unknown = sorted(set(top.bead_types) - set(self.type_names))
        if unknown:
            raise InvalidMappingError(
                f"{where} was trained for bead types {self.type_names}, but the system has unknown types "
                f"{unknown}: it comes from a different mapping"
            )
        if strict and top.fingerprint() != self.fingerprint:
            raise InvalidMappingError(
                f"{where} was trained on a different mapping (fingerprint {self.fingerprint}, molecules "
                f"{self.mapping.get('molecules')}); this system has fingerprint {top.fingerprint()} with molecules "
                f"{[list(t) for t in top.molecule_templates()]}. Pass strict=False to use it anyway."
            )

    def build_model(self, topology: CGTopology | None = None, *, dtype: str | None = None,
                    strict_mapping: bool = True):
        """The torch model with the bundle's weights, bound to ``topology`` when given."""
        config = {"name": self.model_config["name"], "args": dict(self.model_config["args"])}
        if dtype is not None:
            config["args"]["dtype"] = dtype
        model = build_model(config)
        missing, unexpected = model.load_state_dict(self.state_dict, strict=False)
        if missing or unexpected:
            raise CorruptFileError(
                f"model bundle {self.path}: weights do not fit the architecture (missing {list(missing)}, "
                f"unexpected {list(unexpected)})"
            )
        if dtype is not None:
            model.to({"float32": torch.float32, "float64": torch.float64}[dtype])
        if topology is not None:
            self.check_mapping(topology, strict=strict_mapping)
            model.bind(topology)
        return model


def _payload(model, topology: CGTopology, training, model_name) -> dict:
    top = _topology(topology)
    model_name = model_name or getattr(model, "name", "")
    if not model_name:
        raise ConfigurationError(f"{type(model).__name__} has no registry name; pass model_name")
    # System buffers are non-persistent (CGModel), so the state holds the model's own weights only.
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "model": {"name": model_name, "args": _plain(model.get_init_args())},
        "state_dict": state,
        "mapping": top.mapping_data(),
        "units": dict(UNITS),
        "training": _plain(dict(training or {})),
        "versions": package_versions(),
    }
    payload["checksum"] = _checksum(payload)
    return payload


def bundle_from_model(model, topology: CGTopology, *, training: Mapping[str, Any] | None = None,
                      model_name: str | None = None) -> ModelBundle:
    """An in-memory :class:`ModelBundle` of ``model`` for ``topology``'s mapping (what :func:`save_bundle` writes)."""
    p = _payload(model, topology, training, model_name)
    return ModelBundle(model_config=p["model"], state_dict=p["state_dict"], mapping=p["mapping"], units=p["units"],
                       training=p["training"], versions=p["versions"])


def save_bundle(path, model, topology: CGTopology, *, training: Mapping[str, Any] | None = None,
                model_name: str | None = None) -> Path:
    """Write ``model`` (bound or not) with the mapping of ``topology`` to ``path`` atomically.

    ``model_name`` is the model's registry name (default: the model class's ``name``).
    """
    payload = _payload(model, topology, training, model_name)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    logger.info("wrote model bundle %s (mapping %s)", path, payload["mapping"]["fingerprint"])
    return path


def _plain(obj):
    """JSON round trip: guarantees the data is plain (no tensors/NumPy/classes)."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def load_bundle(path) -> ModelBundle:
    """Read a bundle written by :func:`save_bundle`.

    Raises
    ------
    DatasetError
        If the file does not exist.
    CorruptFileError
        If it is truncated, corrupt, not a bundle, of another format version, or fails its checksum.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"model bundle {path} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorruptFileError(f"cannot read the model bundle {path}: {exc.strerror}") from exc
    payload = load_tensor_payload(raw, f"model bundle {path}")
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
        fmt = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CorruptFileError(f"{path} is not an openmm_cgml model bundle (format {fmt!r}, expected {BUNDLE_FORMAT!r})")
    if payload.get("format_version") != BUNDLE_VERSION:
        raise CorruptFileError(
            f"{path} has bundle format version {payload.get('format_version')}; this openmm_cgml reads {BUNDLE_VERSION}"
        )
    for key in ("model", "state_dict", "mapping", "checksum"):
        if key not in payload:
            raise CorruptFileError(f"{path} lacks the bundle entry {key!r}")
    if _checksum(payload) != payload["checksum"]:
        raise CorruptFileError(f"{path} failed its checksum: the bundle was modified or damaged")
    return ModelBundle(
        model_config=payload["model"], state_dict=payload["state_dict"], mapping=payload["mapping"],
        units=payload.get("units", {}), training=payload.get("training", {}), versions=payload.get("versions", {}),
        path=path,
    )
