"""Thermostats: which one a run used, recorded in its dataset, and the OpenMM integrator that realises it.

Transport coefficients (D, the velocity autocorrelation, alpha = D_CG / D_AA) depend on the thermostat: a
local Langevin thermostat at 1 /ps damps diffusion, Andersen collisions too, while NVE and global thermostats
(Nose-Hoover chains, Bussi's stochastic velocity rescaling) leave it indistinguishable from NVE (Basconi and
Shirts, J. Chem. Theory Comput. 9, 2887 (2013)).  Structure sampling may use any of them.

:class:`Thermostat` is the configuration (YAML: ``thermostat: {kind: bussi, tau: "0.5 ps"}``);
:meth:`Thermostat.metadata` is what a dataset records as ``metadata["thermostat"]``, and
:func:`recorded_thermostat` reads it back (from datasets written before the key existed too: they were
Langevin runs recording ``friction_per_ps``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from .config import Friction, StrictModel, Time

__all__ = ["Thermostat", "THERMOSTAT_KINDS", "TRANSPORT_SAFE", "recorded_thermostat", "same_thermostat",
           "describe_thermostat"]

#: Thermostat kinds.  ``nve``: none (the run's energy is conserved; the temperature is set at the start).
THERMOSTAT_KINDS = ("langevin", "bussi", "nose-hoover", "nve")
#: Kinds that leave transport as in NVE (Basconi and Shirts 2013).
TRANSPORT_SAFE = frozenset({"bussi", "nose-hoover", "nve"})


class Thermostat(StrictModel):
    """How a run holds its temperature.

    ``kind``: ``langevin`` (OpenMM's ``LangevinMiddleIntegrator`` with ``friction``; local, damps transport),
    ``bussi`` (stochastic velocity rescaling with relaxation time ``tau``; global), ``nose-hoover`` (OpenMM's
    ``NoseHooverIntegrator`` chain with collision frequency ``1 / tau``; global) or ``nve`` (no thermostat).
    """

    kind: Literal["langevin", "bussi", "nose-hoover", "nve"] = "langevin"
    friction: Friction = "1 /ps"
    tau: Time = "0.5 ps"

    @model_validator(mode="after")
    def _check(self):
        if self.kind == "langevin" and not self.friction > 0:
            raise ValueError("a Langevin thermostat needs friction > 0 (use kind: nve for no thermostat)")
        if self.kind in ("bussi", "nose-hoover") and not self.tau > 0:
            raise ValueError(f"a {self.kind} thermostat needs tau > 0 ps")
        return self

    @property
    def preserves_transport(self) -> bool:
        """Whether diffusion and other transport under it equal NVE's (global thermostats, NVE)."""
        return self.kind in TRANSPORT_SAFE

    def metadata(self, temperature: float | None) -> dict[str, Any]:
        """What a dataset records as ``metadata["thermostat"]`` (MD units)."""
        data: dict[str, Any] = {"kind": self.kind, "temperature_K": temperature}
        if self.kind == "langevin":
            data["friction_per_ps"] = self.friction
        elif self.kind in ("bussi", "nose-hoover"):
            data["tau_ps"] = self.tau
        return data


def recorded_thermostat(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The thermostat a dataset's recorded part ran under (``metadata["thermostat"]``), or None if unknown.

    Datasets written before the key existed ran Langevin dynamics and recorded ``friction_per_ps`` (and
    ``integrator: LangevinMiddleIntegrator``); they are read as such.
    """
    found = metadata.get("thermostat")
    if isinstance(found, dict) and found.get("kind") in THERMOSTAT_KINDS:
        return dict(found)
    if metadata.get("integrator") == "LangevinMiddleIntegrator" or "friction_per_ps" in metadata:
        return {"kind": "langevin", "temperature_K": metadata.get("temperature_K"),
                "friction_per_ps": metadata.get("friction_per_ps")}
    return None


def same_thermostat(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two recorded thermostats give comparable transport: both preserve it (any global thermostat or
    NVE), or both are the same local thermostat with the same friction."""
    if a is None or b is None:
        return False
    if a["kind"] in TRANSPORT_SAFE and b["kind"] in TRANSPORT_SAFE:
        return True
    return a["kind"] == b["kind"] and a.get("friction_per_ps") == b.get("friction_per_ps")


def describe_thermostat(recorded: dict[str, Any] | None) -> str:
    """A short label, e.g. ``"Langevin 1 /ps"``, ``"Bussi tau 0.5 ps"``, ``"NVE"``, ``"unknown"``."""
    if recorded is None:
        return "unknown"
    kind = recorded["kind"]
    if kind == "langevin":
        return f"Langevin {recorded.get('friction_per_ps', float('nan')):g} /ps"
    if kind in ("bussi", "nose-hoover"):
        name = "Bussi" if kind == "bussi" else "Nose-Hoover"
        return f"{name} tau {recorded.get('tau_ps', float('nan')):g} ps"
    return "NVE"
