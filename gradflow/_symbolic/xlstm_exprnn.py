"""xLSTM's stabilised sLSTM and expRNN, each its recurrence written once (issue 11).

* ``slstm-stabilised`` (Beck et al. 2024, official vanilla step): the sLSTM with the stabiliser
  state m_t = max(log f_t + m_{t−1}, ĩ_t) (f_t = σ(f̃_t), ĩ_t the input-gate pre-activation),
  i'_t = exp(ĩ_t − m_t), f'_t = exp(log f_t + m_{t−1} − m_t),
  c_t = f'_t ⊙ c_{t−1} + i'_t ⊙ tanh z̃_t, n_t = f'_t ⊙ n_{t−1} + i'_t, h_t = σ(õ_t) ⊙ c_t ⊘ n_t.
  The max is written max(u, v) = v + relu(u − v) (relu' = H with H(0) = 0: at a tie the
  derivative follows ĩ_t). The stored states are c = c̃ e^{−m}, n = ñ e^{−m} of the unstabilised
  ``slstm`` (c̃, ñ), so h is the same function of the inputs while c and n stay finite where ĩ is
  large. The stabiliser is differentiated through, as in the official vanilla code. From the zero
  state the official code takes m_1 = ĩ_1 (its n_{t−1} = 0 branch) where this cell takes
  m_1 = max(log f_1 + m_0, ĩ_1): c and n then differ by a factor e^{Δm}, h and c/n do not.
* ``exprnn`` (Lezcano-Casado & Martínez-Rubio 2019): h_t = modReLU(exp(A − Aᵀ) h_{t−1} + U x_t),
  modReLU(z) = sign(z) ⊙ relu(|z| + b). W = exp(A − Aᵀ) is orthogonal, and modReLU'(z) =
  H(|z| + b) ∈ {0, 1} (z ≠ 0), so ‖J_t‖₂ ≤ 1: with b ≤ 0 no gradient can grow. The reference code
  skew-symmetrises triu(A_ref, 1); its weights are this A = triu(A_ref, 1). The input map has no bias.
"""

from __future__ import annotations

from sympy import HadamardPower, MatAdd, MatMul

from .activations import relu, sigmoid, tanh
from .cell import Cell, Recurrence
from .modern_activations import absolute, exp, logsigmoid, sign
from .nodes import MatrixExp, hadamard

ONE_BIAS = {"pytorch": 1, "keras": 1}


def _slstm_stabilised(r: Recurrence):
    """The sLSTM with its stabiliser state m (official vanilla pointwise step, one head)."""
    m_prev = r.prev["m"]
    i_pre = r.let(r"\tilde{i}", r.affine("i"))
    log_f = r.let(r"\log f", logsigmoid(r.affine("f")))
    z = r.let("z", tanh(r.affine("z")))
    o = r.let("o", sigmoid(r.affine("o")))
    m = r.let("m", MatAdd(i_pre, relu(MatAdd(log_f, m_prev, MatMul(-1, i_pre)))))
    i = r.let("i'", exp(MatAdd(i_pre, MatMul(-1, m))))
    f = r.let("f'", exp(MatAdd(log_f, m_prev, MatMul(-1, m))))
    c = r.let("c", MatAdd(hadamard(f, r.prev["c"]), hadamard(i, z)))
    nn = r.let("n", MatAdd(hadamard(f, r.prev["n"]), i))
    return {"c": c, "n": nn, "m": m, "h": hadamard(o, c, HadamardPower(nn, -1))}


def _exprnn(r: Recurrence):
    """expRNN: h_t = sign(a_t) ⊙ relu(|a_t| + b), a_t = exp(A − Aᵀ) h_{t−1} + U x_t."""
    A = r.W(label="A")
    W = MatrixExp(MatAdd(A, MatMul(-1, A.T)))
    a = r.let("a", MatAdd(MatMul(W, r.prev["h"]), MatMul(r.U(), r.x)))
    return {"h": hadamard(sign(a), relu(MatAdd(absolute(a), r.b())))}


XLSTM_EXPRNN_CELLS: tuple[Cell, ...] = (
    Cell("slstm-stabilised", "sLSTM of xLSTM with its stabiliser state m (one head)", ("h", "c", "n", "m"),
         _slstm_stabilised, bias_copies=ONE_BIAS, reference="beck2024xlstm"),
    Cell("exprnn", "expRNN, h_t = modReLU(exp(A - A^T) h_{t-1} + U x_t)", ("h",), _exprnn,
         bias_copies=ONE_BIAS, reference="lezcano2019exprnn"),
)

XLSTM_EXPRNN_ALIASES = {"slstm-stabilized": "slstm-stabilised", "exp-rnn": "exprnn"}
