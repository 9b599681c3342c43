"""xLSTM's mLSTM (matrix memory; Beck et al. 2024), one head, its recurrence written once (issue 11).

Head dimension d = n (the hidden size). With q_t = U_q x_t + b_q, k_t = (U_k x_t + b_k)/√n,
v_t = U_v x_t + b_v, o_t = σ(U_o x_t + b_o) (vectors) and the scalar gates of the head
ĩ_t = w_iᵀ x_t + b_i, f̃_t = w_fᵀ x_t + b_f, i_t = exp(ĩ_t), f_t = σ(f̃_t) (the official code's
logsigmoid forget gate):

    C_t = f_t C_{t−1} + i_t v_t k_tᵀ,   n_t = f_t n_{t−1} + i_t k_t,
    h_t = o_t ⊙ C_t q_t / max(|n_tᵀ q_t|, 1).

**The state.** The matrix memory is carried as vec C_t (column-stacked, size n²: entry
a + n·b is C[a, b]), so vec(v kᵀ) = k ⊗ v and C q = (qᵀ ⊗ I_n) vec C. The cell's states are
(h, C, n) of sizes (n, n², n) (:attr:`Cell.sizes`); h is a read-out: it does not feed back, so
∂h_t/∂h_{t−1} = 0. A scalar s (1 × 1) multiplies a vector through the ones vector, 1 s.
max(u, 1) is written 1 + relu(u − 1).

**The Jacobian.** The gates read x_t only, so the derived memory blocks are
∂vec C_t/∂vec C_{t−1} = diag(1 f_t) = f_t I_{n²} and ∂n_t/∂n_{t−1} = f_t I_n: over many steps
‖∂(C_T, n_T)/∂(C_k, n_k)‖₂ = ∏_{j=k+1}^{T} f_j exactly. The only other blocks are the read-out
rows ∂h_t/∂(C_{t−1}, n_{t−1}).

**Numbers.** The numeric engine lays the states out by their sizes
(:class:`gradflow._numeric.layout.StateLayout`: h, vec C, n[, m] at offsets 0, n, n² + n[, n² + 2n];
N = n² + 2n (+1)), so ``network`` (the ``pytorch`` init by default; ``forget_bias`` sets the scalar
b_f), ``gradient_flow`` (exact mode), ``gradflow flow`` and ``write_report`` run these cells:
``Flow.cell_state`` is the memory block ∂(C_T, n_T)/∂(C_k, n_k). Still refused, each with one
:class:`GradflowError`: the matrix-free mode and the per-unit block path (they assume n entries
per state), reading PyTorch/Keras weights (no framework module holds this cell: weights load by
parameter name, ``U_q`` … ``w_i``, ``b_i`` in a mapping or ``.npz``, or as ``Weights(cell, n, m,
arrays)``), and stacked networks: the chain rule does not give the input
Jacobian ∂s_t/∂x_t (C_t q_t is bilinear in x_t) that a stacked network needs.

**Parameters** (``count_params``, both conventions): U_q, U_k, U_v, U_o (n × m) with their
biases, and the gate rows w_i, w_f (1 × m) with scalar biases, one bias per projection
(``nn.Linear``): 4n·m + 4n + 2m + 2. This is the cell of the paper's equations, every projection
reading x_t. The official ``xlstm`` package arranges the same recurrence differently: its
``mLSTMCell`` takes q, k, v from the surrounding layer and computes the two gates from [q; k; v]
(``nn.Linear(3·E, heads)`` each, 2·(3E + 1) per head), has no σ output gate (the layer multiplies
by SiLU(z) instead) and adds a head-wise layer norm; the layer around it adds the up/down
projections, a causal convolution, head-wise q/k/v projections and a learnable skip. Those are
not counted here (as for every modern cell, the cell's recurrence only); a ``reference``
convention for that layout is not implemented.
"""

from __future__ import annotations

import sympy as sp
from sympy import HadamardPower, Identity, KroneckerProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix

from .activations import relu, sigmoid
from .cell import Cell, Param, Recurrence, m, n
from .modern_activations import absolute, exp, logsigmoid
from .nodes import hadamard

ONE_BIAS = {"pytorch": 1, "keras": 1}


def _scalar_gate(r: Recurrence, gate: str):
    """w_gᵀ x_t + b_g (1 × 1): a per-head scalar gate's pre-activation, from x_t only."""
    w = MatrixSymbol("w_{%s}" % gate, 1, m)
    b = MatrixSymbol("b_{%s}" % gate, 1, 1)
    if gate not in r.gates:
        r.gates.append(gate)
    r.params.setdefault(w.name, Param(w, "U", gate))
    r.params.setdefault(b.name, Param(b, "b", gate, "merged"))
    return MatAdd(MatMul(w, r.x), b)


def _spread(s, rows):
    """The 1 × 1 scalar s as a column of ``rows`` equal entries, 1 s."""
    return MatMul(OneMatrix(rows, 1), s)


def _read(r: Recurrence, gate: str):
    return MatAdd(MatMul(r.U(gate), r.x), r.b(gate))


def _mlstm(r: Recurrence):
    """mLSTM, one head, unstabilised (the paper's equations; σ forget gate)."""
    C_prev, n_prev = r.prev["C"], r.prev["n"]
    q = r.let("q", _read(r, "q"))
    k = r.let("k", MatMul(1 / sp.sqrt(n), _read(r, "k")))
    v = r.let("v", _read(r, "v"))
    i = r.let("i", exp(_scalar_gate(r, "i")))
    f = r.let("f", sigmoid(_scalar_gate(r, "f")))
    o = r.let("o", sigmoid(_read(r, "o")))
    C = r.let("C", MatAdd(hadamard(_spread(f, n ** 2), C_prev), hadamard(_spread(i, n ** 2), KroneckerProduct(k, v))))
    nn = r.let("n", MatAdd(hadamard(_spread(f, n), n_prev), hadamard(_spread(i, n), k)))
    den = r.let(r"\nu", MatAdd(OneMatrix(1, 1), relu(MatAdd(absolute(MatMul(q.T, nn)), MatMul(-1, OneMatrix(1, 1))))))
    read = MatMul(KroneckerProduct(q.T, Identity(n)), C)
    return {"h": hadamard(o, read, HadamardPower(_spread(den, n), -1)), "C": C, "n": nn}


def _mlstm_stabilised(r: Recurrence):
    """mLSTM, one head, with the stabiliser state m (official ``recurrent_step_stabilized_simple``).

    m_t = max(log σ(f̃_t) + m_{t−1}, ĩ_t), i'_t = exp(ĩ_t − m_t), f'_t = exp(log σ(f̃_t) + m_{t−1} − m_t);
    C_t = f'_t C_{t−1} + i'_t v_t k_tᵀ, n_t = f'_t n_{t−1} + i'_t k_t,
    h_t = o_t ⊙ C_t q_t / max(|n_tᵀ q_t|, exp(−m_t)). The max's are written max(u, v) = v + relu(u − v).
    The stored C, n are the unstabilised C̃ e^{−m}, ñ e^{−m}, so h is the same function of the inputs.
    The official step adds ε = 1e-6 to the denominator; this cell has no ε, so the official h is this
    h times ν_t/(ν_t + ε) (tests/test_xlstm_official.py compares with ε = 0 and checks that factor).
    """
    C_prev, n_prev, m_prev = r.prev["C"], r.prev["n"], r.prev["m"]
    q = r.let("q", _read(r, "q"))
    k = r.let("k", MatMul(1 / sp.sqrt(n), _read(r, "k")))
    v = r.let("v", _read(r, "v"))
    i_pre = r.let(r"\tilde{i}", _scalar_gate(r, "i"))
    log_f = r.let(r"\log f", logsigmoid(_scalar_gate(r, "f")))
    o = r.let("o", sigmoid(_read(r, "o")))
    mm = r.let("m", MatAdd(i_pre, relu(MatAdd(log_f, m_prev, MatMul(-1, i_pre)))))
    i = r.let("i'", exp(MatAdd(i_pre, MatMul(-1, mm))))
    f = r.let("f'", exp(MatAdd(log_f, m_prev, MatMul(-1, mm))))
    C = r.let("C", MatAdd(hadamard(_spread(f, n ** 2), C_prev), hadamard(_spread(i, n ** 2), KroneckerProduct(k, v))))
    nn = r.let("n", MatAdd(hadamard(_spread(f, n), n_prev), hadamard(_spread(i, n), k)))
    floor = exp(MatMul(-1, mm))
    den = r.let(r"\nu", MatAdd(floor, relu(MatAdd(absolute(MatMul(q.T, nn)), MatMul(-1, floor)))))
    read = MatMul(KroneckerProduct(q.T, Identity(n)), C)
    return {"h": hadamard(o, read, HadamardPower(_spread(den, n), -1)), "C": C, "n": nn, "m": mm}


MLSTM_CELLS: tuple[Cell, ...] = (
    Cell("mlstm", "mLSTM of xLSTM (matrix memory, one head, unstabilised form)", ("h", "C", "n"),
         _mlstm, bias_copies=ONE_BIAS, reference="beck2024xlstm", sizes={"C": n ** 2}),
    Cell("mlstm-stabilised", "mLSTM of xLSTM with its stabiliser state m (one head)", ("h", "C", "n", "m"),
         _mlstm_stabilised, bias_copies=ONE_BIAS, reference="beck2024xlstm",
         sizes={"C": n ** 2, "m": sp.Integer(1)}),
)

MLSTM_ALIASES: dict[str, str] = {"mlstm-stabilized": "mlstm-stabilised"}
