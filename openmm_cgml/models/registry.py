"""The model registry (entry-point group ``openmm_cgml.model``) and building a model from plain data."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..exceptions import ConfigurationError
from ..registry import Registry

__all__ = ["MODELS", "build_model", "forces_and_energy"]

#: Registry of CG models (:class:`~openmm_cgml.models.base.CGModel` subclasses), filled from the entry-point
#: group ``openmm_cgml.model``: ``MODELS.create(name, **init_args)``.
MODELS = Registry("model")


def build_model(config: Mapping, topology=None):
    """Build a registered model from plain data ``{"name": ..., "args": {...}}`` and optionally bind it to a
    :class:`~openmm_cgml.topology.CGTopology`."""
    from .base import CGModel

    if "name" not in config:
        raise ConfigurationError(f"a model configuration needs a 'name' (one of {MODELS.names()}), got {dict(config)}")
    model = MODELS.create(config["name"], **dict(config.get("args", {})))
    if not isinstance(model, CGModel):
        raise ConfigurationError(f"the model {config['name']!r} is a {type(model).__name__}, not a CGModel "
                                 "(openmm_cgml.models.CGModel is the contract models follow)")
    if topology is not None:
        model.bind(topology)
    return model


def forces_and_energy(model, positions: torch.Tensor, box: torch.Tensor | None = None):
    """Energy (kJ/mol) and forces (kJ/mol/nm) of one frame with autograd (for tests and benchmarks)."""
    pos = positions.detach().to(model.dtype).requires_grad_(True)
    energy = model(pos, None if box is None else box.to(model.dtype))
    (grad,) = torch.autograd.grad(energy, pos)
    return energy.detach(), -grad
