"""Cubic Hermite tables of a model's distance filters (the inference fast path of :mod:`.schnet`)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FilterTable", "hermite_coefficients"]


class FilterTable(nn.Module):
    """Filters ``W(r)`` of several convolutions tabulated on a uniform grid, cubic Hermite interpolation.

    The filters of a trained model depend on the pair distance only, so they can be
    evaluated once on a fine grid ``r_k = k h`` (``k = 0..K``, ``h = cutoff / K``) with their
    exact derivatives, and interpolated between grid points with cubic Hermite polynomials:
    values and first derivatives are continuous everywhere (forces stay continuous) and
    equal the exact ones at the grid points; the error is ``O(h^4)`` in ``W`` and
    ``O(h^3)`` in ``dW/dr``.  The cutoff lies on a grid point where the exact filter and its
    derivative vanish (cosine envelope), so the table is as smooth at the cutoff as the model.

    Each interval stores the four polynomial coefficients of all ``channels`` filters in one
    row, so an evaluation is one gather plus a Horner step (instead of an MLP per pair).
    The buffers are not persistent: a model's ``state_dict`` (and bundle) is unchanged.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("coeffs", torch.zeros(0, 0), persistent=False)
        self.inv_spacing = 1.0
        self.n_intervals = 0
        self.channels = 0

    def set_table(self, coeffs: torch.Tensor, spacing: float) -> None:
        """``coeffs`` (K, 4, channels): ``W = a + b t + c t^2 + d t^3`` on interval k, ``t = r / h - k``."""
        self.n_intervals = int(coeffs.shape[0])
        self.channels = int(coeffs.shape[2])
        self.inv_spacing = 1.0 / float(spacing)
        self.coeffs = coeffs.reshape(self.n_intervals, 4 * self.channels).contiguous()

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        """Filter values (n_pairs, channels) at distances ``dist`` (n_pairs,) nm."""
        x = dist * self.inv_spacing
        k = torch.clamp(torch.floor(x.detach()), 0.0, float(self.n_intervals - 1))
        t = (x - k).unsqueeze(-1)
        td = t.detach()
        c = self.coeffs.index_select(0, k.to(torch.long)).view(dist.shape[0], 4, self.channels)
        c0, c1, c2, c3 = c.unbind(1)
        value = c0 + td * (c1 + td * (c2 + td * c3))
        slope = c1 + td * (2.0 * c2 + (3.0 * td) * c3)
        # Value from the polynomial, gradient from its analytic slope: the zero term (t - td) * slope carries
        # dW/dt to the distances without autograd retracing the Horner chain (about half the backward work).
        # First derivatives (forces) are exact; the table is for inference, not for double backward.
        return value + (t - td) * slope


def hermite_coefficients(values: torch.Tensor, derivatives: torch.Tensor, spacing: float) -> torch.Tensor:
    """Cubic Hermite coefficients (K, 4, C) from values and derivatives (K + 1, C) on a grid of ``spacing``."""
    y0, y1 = values[:-1], values[1:]
    m0, m1 = derivatives[:-1] * spacing, derivatives[1:] * spacing
    return torch.stack([y0, m0, 3.0 * (y1 - y0) - 2.0 * m0 - m1, 2.0 * (y0 - y1) + m0 + m1], 1)
