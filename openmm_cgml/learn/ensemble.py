"""Small regression networks for sweep data: an ensemble of multilayer perceptrons trained in PyTorch and kept as
plain numbers, so that a trained model is evaluated with NumPy and stored in JSON (nothing executable is saved or
loaded).

:func:`train_ensemble` fits ``n_members`` networks (each on a bootstrap resample of the training rows, from its own
initialisation) with input and output normalisation, Adam, and early stopping on a validation set;
:class:`Ensemble` predicts the members' mean and spread, and :meth:`Ensemble.calibrate` widens the spread by the
residual it misses on held-out rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..exceptions import ConfigurationError, CorruptFileError

__all__ = ["Ensemble", "train_ensemble", "mlp_forward"]


def mlp_forward(layers: list[dict], x: np.ndarray) -> np.ndarray:
    """A multilayer perceptron's output (n, d_out) for inputs ``x`` (n, d_in): ``layers`` are
    ``{"weight": (d_out, d_in), "bias": (d_out,)}``, SiLU between them, linear last."""
    h = np.asarray(x, dtype=np.float64)
    for i, layer in enumerate(layers):
        h = h @ np.asarray(layer["weight"], dtype=np.float64).T + np.asarray(layer["bias"], dtype=np.float64)
        if i < len(layers) - 1:
            h = h / (1.0 + np.exp(-h))  # SiLU
    return h


@dataclass
class Ensemble:
    """Members' weights with the normalisation of inputs and outputs; ``extra_variance`` (per output, in output
    units squared) is added to the members' variance by :meth:`calibrate`."""

    members: list[list[dict]]
    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: np.ndarray
    y_scale: np.ndarray
    extra_variance: np.ndarray = field(default_factory=lambda: np.zeros(1))
    history: list[dict] = field(default_factory=list)

    def predict(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (n, d_out) of the prediction: the members' spread plus the calibrated
        extra variance."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if x.shape[1] != self.x_mean.size:
            raise ConfigurationError(f"the model takes {self.x_mean.size} inputs per row, got {x.shape[1]}")
        z = (x - self.x_mean) / self.x_scale
        outs = np.stack([mlp_forward(m, z) for m in self.members]) * self.y_scale + self.y_mean
        mean = outs.mean(axis=0)
        var = outs.var(axis=0, ddof=1) if len(self.members) > 1 else np.zeros_like(mean)
        return mean, np.sqrt(var + self.extra_variance)

    def calibrate(self, x, y) -> None:
        """Set the extra variance so that the mean squared residual on held-out rows ``(x, y)`` equals the mean
        predicted variance (what the members' spread does not explain: noise in the targets, model error)."""
        self.extra_variance = np.zeros(self.y_mean.size)
        mean, sd = self.predict(x)
        resid2 = np.mean((np.asarray(y, dtype=np.float64).reshape(mean.shape) - mean) ** 2, axis=0)
        self.extra_variance = np.maximum(resid2 - np.mean(sd**2, axis=0), 0.0)

    def to_data(self) -> dict[str, Any]:
        return {"members": [[{"weight": np.asarray(layer["weight"]).tolist(), "bias": np.asarray(layer["bias"]).tolist()}
                             for layer in m] for m in self.members],
                "x_mean": self.x_mean.tolist(), "x_scale": self.x_scale.tolist(), "y_mean": self.y_mean.tolist(),
                "y_scale": self.y_scale.tolist(), "extra_variance": np.asarray(self.extra_variance).tolist()}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Ensemble:
        try:
            members = [[{"weight": np.asarray(layer["weight"], dtype=np.float64),
                         "bias": np.asarray(layer["bias"], dtype=np.float64)} for layer in m] for m in data["members"]]
            ens = cls(members, *(np.asarray(data[k], dtype=np.float64) for k in ("x_mean", "x_scale", "y_mean",
                                                                               "y_scale", "extra_variance")))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"not a network ensemble: {exc!r}") from exc
        if not members or any(len(m) == 0 for m in members):
            raise CorruptFileError("a network ensemble needs at least one member with layers")
        for m in members:
            d = ens.x_mean.size
            for layer in m:
                w = layer["weight"]
                if w.ndim != 2 or w.shape[1] != d or layer["bias"].shape != (w.shape[0],):
                    raise CorruptFileError(f"inconsistent layer shapes in a network ensemble: {w.shape}")
                d = w.shape[0]
            if d != ens.y_mean.size:
                raise CorruptFileError(f"the ensemble's networks give {d} outputs, its normalisation {ens.y_mean.size}")
        return ens


def _scale(a: np.ndarray) -> np.ndarray:
    s = a.std(axis=0)
    return np.where(s > 0, s, 1.0)


def train_ensemble(x_train, y_train, x_val, y_val, *, n_members: int = 5, hidden: tuple[int, ...] = (32, 32),
                   epochs: int = 3000, patience: int = 200, learning_rate: float = 3e-3, weight_decay: float = 1e-4,
                   seed: int = 0, bootstrap: bool = True, sample_weight=None) -> Ensemble:
    """Fit an :class:`Ensemble` of ``n_members`` MLPs (full-batch Adam, mean squared error on normalised outputs,
    optionally weighted per row) and keep each member's weights at its best validation loss (stopping after
    ``patience`` epochs without improvement).

    Inputs and outputs are normalised by the training rows' mean and standard deviation (a constant input, such
    as a single temperature, passes through unscaled)."""
    import torch

    x_train, y_train = np.asarray(x_train, np.float64), np.asarray(y_train, np.float64)
    x_val, y_val = np.asarray(x_val, np.float64), np.asarray(y_val, np.float64)
    if y_train.ndim == 1:
        y_train, y_val = y_train[:, None], y_val.reshape(-1, 1)
    if x_train.ndim != 2 or x_train.shape[0] != y_train.shape[0] or x_val.shape[0] != y_val.shape[0]:
        raise ConfigurationError(f"rows of inputs and targets differ: {x_train.shape} vs {y_train.shape}")
    if x_train.shape[0] < 2 or x_val.shape[0] < 1:
        raise ConfigurationError(f"need at least 2 training rows and 1 validation row, got {x_train.shape[0]} and "
                                 f"{x_val.shape[0]}")
    if not (np.isfinite(x_train).all() and np.isfinite(y_train).all() and np.isfinite(x_val).all()
            and np.isfinite(y_val).all()):
        raise ConfigurationError("inputs and targets must be finite numbers")
    weights = np.ones(x_train.shape[0]) if sample_weight is None else np.asarray(sample_weight, np.float64)
    x_mean, x_scale = x_train.mean(axis=0), _scale(x_train)
    y_mean, y_scale = y_train.mean(axis=0), _scale(y_train)
    zt = torch.as_tensor((x_train - x_mean) / x_scale)
    yt = torch.as_tensor((y_train - y_mean) / y_scale)
    zv = torch.as_tensor((x_val - x_mean) / x_scale)
    yv = torch.as_tensor((y_val - y_mean) / y_scale)
    wt = torch.as_tensor(weights / weights.mean())
    rng = np.random.default_rng(seed)
    members, history = [], []
    for k in range(n_members):
        torch.manual_seed(int(rng.integers(2**31)))
        sizes = [x_train.shape[1], *hidden, y_train.shape[1]]
        mods: list[torch.nn.Module] = []
        for i in range(len(sizes) - 1):
            mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]).double())
            if i < len(sizes) - 2:
                mods.append(torch.nn.SiLU())
        net = torch.nn.Sequential(*mods)
        rows = rng.integers(0, zt.shape[0], zt.shape[0]) if bootstrap and n_members > 1 else np.arange(zt.shape[0])
        idx = torch.as_tensor(rows)
        opt = torch.optim.Adam(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
        best, best_state, since = math.inf, None, 0
        for epoch in range(epochs):  # noqa: B007 (the count is recorded below)
            opt.zero_grad()
            loss = (wt[idx, None] * (net(zt[idx]) - yt[idx]) ** 2).mean()
            loss.backward()
            opt.step()
            with torch.no_grad():
                val = float(((net(zv) - yv) ** 2).mean())
            if val < best - 1e-12:
                best, since = val, 0
                best_state = [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy())
                              for m in net if isinstance(m, torch.nn.Linear)]
            else:
                since += 1
                if since >= patience:
                    break
        members.append([{"weight": w, "bias": b} for w, b in best_state])
        history.append({"member": k, "epochs": epoch + 1, "best_validation_mse_normalised": best})
    return Ensemble(members, x_mean, x_scale, y_mean, y_scale, np.zeros(y_train.shape[1]), history)
