"""PyTorch-autograd oracles shared by tests: Jacobians of ``nn.LSTMCell`` steps and of step functions
written in the tests, never gradflow's."""

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


def worst_step_errors(net, F, x, s0) -> tuple[float, float]:
    """The largest errors of gradflow's unrolled states and one-step Jacobians against a step
    function ``F(s_{t−1}, x_t) -> s_t`` written in the test (one sequence, float64), Jacobians by
    ``torch.func.jacrev``: (max relative error of J_t, max absolute error of s_t) over t = 1…T.
    ``s0``: the initial state, the cell's states concatenated in order (n entries each)."""
    N = net.hidden
    traj = net.unroll(x, initial={st: s0[i * N:(i + 1) * N] for i, st in enumerate(net.cell.states)})
    s = torch.as_tensor(np.asarray(s0), dtype=torch.float64)
    worst_J = worst_s = 0.0
    for t in range(1, x.shape[0] + 1):
        xt = torch.as_tensor(np.asarray(x[t - 1, 0]), dtype=torch.float64)
        J_ref = torch.func.jacrev(F)(s, xt).numpy()
        J = np.asarray(net.step_jacobian(traj, t))[0]
        worst_J = max(worst_J, np.abs(J - J_ref).max() / max(1.0, np.abs(J_ref).max()))
        s = F(s, xt)
        worst_s = max(worst_s, np.abs(np.asarray(traj.states[t][0]) - s.numpy()).max())
    return worst_J, worst_s
