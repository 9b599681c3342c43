"""PyTorch-autograd oracles shared by tests: Jacobians of ``nn.LSTMCell`` steps, never gradflow's."""

from __future__ import annotations

import numpy as np
import torch

import gradflow as gf


def torch_lstm_jacobians(net, x):
    """J_t = ∂(h_t, c_t)/∂(h_{t−1}, c_{t−1}) for t = 1…T, by PyTorch autograd of ``nn.LSTMCell``
    holding ``net``'s weights, along the first sequence of ``x`` (T, B, m); shape (T, N, N)."""
    n, m = net.hidden, net.input
    mod = torch.nn.LSTMCell(m, n).double()
    mod.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in gf.to_state_dict(net.weights).items()})
    mod.requires_grad_(False)

    def F(s, xt):
        h, c = mod(xt[None], (s[None, :n], s[None, n:]))
        return torch.cat([h[0], c[0]])

    X = torch.from_numpy(np.asarray(x)[:, 0, :])
    s = torch.zeros(2 * n, dtype=torch.float64)
    out = []
    for t in range(X.shape[0]):
        out.append(torch.autograd.functional.jacobian(lambda v, t=t: F(v, X[t]), s).numpy())
        with torch.no_grad():
            s = F(s, X[t])
    return np.array(out)
