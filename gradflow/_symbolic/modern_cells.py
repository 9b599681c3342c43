"""Cells of 2000–2024 beside the classic ones, each its recurrence written once.

Gated (peephole LSTM, CIFG, xLSTM's sLSTM in raw and normalised coordinates, IndRNN), diagonal
linear (LRU) and input-driven (minGRU, minLSTM), and ODE-inspired (AntisymmetricRNN, Lipschitz RNN,
coRNN explicit and IMEX) recurrences. Like :mod:`gradflow._symbolic.cells`,
a definition states the recurrence and nothing else; Jacobian blocks, kernels, parameter counts
and report sections are derived from it.

Parameter counts follow each cell's reference implementation, which for every cell here keeps
one bias per gate (``nn.Linear``-style, or TF ``LSTMCell`` for the peephole LSTM): the
``pytorch`` and ``keras`` conventions both count one bias, as none of these cells has a
``torch.nn`` module with separate ``b_ih`` and ``b_hh``. Only parameters of the recurrence are
counted: a read-out (the LRU's C and D, xLSTM's up/down projections) is not part of the cell.
Fixed scalar hyperparameters (ε, γ, Δt, β, α) are named constants of the recurrence
(:meth:`Recurrence.const`): they print as symbols and enter the numbers with the stated value;
they are not trained and not counted.
"""

from __future__ import annotations

from sympy import HadamardPower, Identity, MatAdd, MatMul

from .activations import relu, sigmoid, tanh
from .cell import Cell, Recurrence, n
from .modern_activations import cos, exp, sin
from .nodes import hadamard, one_minus
from .xlstm_exprnn import XLSTM_EXPRNN_ALIASES, XLSTM_EXPRNN_CELLS

#: reference implementations keep one bias per gate (see the module docstring)
ONE_BIAS = {"pytorch": 1, "keras": 1}


def _input_affine(r: Recurrence, gate: str | None = None):
    """U_g x_t + b_g: a gate that reads the input only (no h_{t−1})."""
    return MatAdd(MatMul(r.U(gate), r.x), r.b(gate))


# -- gated ------------------------------------------------------------------------------------
def _peephole_lstm(r: Recurrence):
    """Peephole LSTM (Gers, Schraudolph & Schmidhuber 2002; TF ``LSTMCell(use_peepholes=True)``).

    The input and forget gates peep at c_{t−1}, the output gate at c_t, through element-wise
    weights w_i, w_f, w_o. TF adds a constant forget bias (default 1) inside σ; here b_f is the
    whole forget bias (``forget_bias=`` sets it).
    """
    c_prev = r.prev["c"]
    i = r.let("i", sigmoid(MatAdd(r.affine("i"), hadamard(r.w("i"), c_prev))))
    f = r.let("f", sigmoid(MatAdd(r.affine("f"), hadamard(r.w("f"), c_prev))))
    g = r.let("g", tanh(r.affine("g")))
    c = r.let("c", MatAdd(hadamard(f, c_prev), hadamard(i, g)))
    o = r.let("o", sigmoid(MatAdd(r.affine("o"), hadamard(r.w("o"), c))))
    return {"c": c, "h": hadamard(o, tanh(c))}


def _cifg(r: Recurrence):
    """LSTM with coupled input and forget gate (CIFG; Greff et al. 2017): f_t = 1 − i_t."""
    i = r.let("i", sigmoid(r.affine("i")))
    g = r.let("g", tanh(r.affine("g")))
    o = r.let("o", sigmoid(r.affine("o")))
    c = r.let("c", MatAdd(hadamard(one_minus(i), r.prev["c"]), hadamard(i, g)))
    return {"c": c, "h": hadamard(o, tanh(c))}


def _indrnn(r: Recurrence):
    """IndRNN (Li et al. 2018): h_t = relu(U x_t + u ⊙ h_{t−1} + b); each unit its own recurrence."""
    a = r.let("a", MatAdd(MatMul(r.U(), r.x), hadamard(r.w(label="u"), r.prev["h"]), r.b()))
    return {"h": relu(a)}


def _slstm(r: Recurrence):
    """sLSTM of xLSTM (Beck et al. 2024), one head, unstabilised, sigmoid forget gate (official vanilla).

    i_t = exp(ĩ_t), f_t = σ(f̃_t), c_t = f_t ⊙ c_{t−1} + i_t ⊙ tanh(z̃_t), n_t = f_t ⊙ n_{t−1} + i_t,
    h_t = σ(õ_t) ⊙ c_t ⊘ n_t. The official code carries a stabiliser m_t and stores c e^{−m},
    n e^{−m}; h is the same function of the inputs (c/n is invariant to m), so this form has the
    same h and the same ∂h_T/∂h_k, but its c and n overflow where ĩ is large.
    """
    i = r.let("i", exp(r.affine("i")))
    f = r.let("f", sigmoid(r.affine("f")))
    z = r.let("z", tanh(r.affine("z")))
    o = r.let("o", sigmoid(r.affine("o")))
    c = r.let("c", MatAdd(hadamard(f, r.prev["c"]), hadamard(i, z)))
    nn = r.let("n", MatAdd(hadamard(f, r.prev["n"]), i))
    return {"c": c, "n": nn, "h": hadamard(o, c, HadamardPower(nn, -1))}


def _slstm_normalised(r: Recurrence):
    """The same sLSTM in normalised coordinates: c_t here is the normalised cell c̃_t/ñ_t.

    With κ_t = i_t ⊘ n_t ∈ (0, 1]: c_t = (1 − κ_t) ⊙ c_{t−1} + κ_t ⊙ tanh(z̃_t), n_t = f_t ⊙ n_{t−1} + i_t,
    h_t = σ(õ_t) ⊙ c_t. The carousel ∂c_t/∂c_{t−1} = diag(1 − κ_t) has entries in [0, 1) even with the
    exponential input gate, where the unnormalised cell's diag(f_t) path can be swamped by i_t.
    """
    i = r.let("i", exp(r.affine("i")))
    f = r.let("f", sigmoid(r.affine("f")))
    z = r.let("z", tanh(r.affine("z")))
    o = r.let("o", sigmoid(r.affine("o")))
    nn = r.let("n", MatAdd(hadamard(f, r.prev["n"]), i))
    kappa = r.let(r"\kappa", hadamard(i, HadamardPower(nn, -1)))
    c = r.let("c", MatAdd(hadamard(one_minus(kappa), r.prev["c"]), hadamard(kappa, z)))
    return {"c": c, "n": nn, "h": hadamard(o, c)}


# -- diagonal linear recurrences ----------------------------------------------------------------
def _lru(r: Recurrence):
    """LRU (Orvieto et al. 2023): x_t = λ ⊙ x_{t−1} + γ ⊙ (B u_t), λ = exp(−exp ν + i exp θ), γ = exp(γ_log).

    The complex state x = h + i q is written as two real states (h, q): each mode is a 2 × 2
    rotation–scaling block with modulus |λ| = exp(−exp ν) and phase exp θ. B = B_re + i B_im is
    two real n × m input weights. The read-out Re(C x) + D u is not part of the recurrence.
    """
    h, q = r.prev["h"], r.prev["q"]
    mod = r.let(r"\rho", exp(MatMul(-1, exp(r.w("nu", label=r"\nu")))))
    phase = r.let(r"\omega", exp(r.w("theta", label=r"\theta")))
    gamma = r.let(r"\gamma", exp(r.w("gamma", label=r"\gamma_{\log}")))
    re, im = hadamard(mod, cos(phase)), hadamard(mod, sin(phase))
    h_new = MatAdd(hadamard(re, h), MatMul(-1, hadamard(im, q)),
                   hadamard(gamma, MatMul(r.U("re", label=r"B_{re}"), r.x)))
    q_new = MatAdd(hadamard(im, h), hadamard(re, q), hadamard(gamma, MatMul(r.U("im", label=r"B_{im}"), r.x)))
    return {"h": h_new, "q": q_new}


# -- diagonal, input-driven -------------------------------------------------------------------
def _mingru(r: Recurrence):
    """minGRU (Feng et al. 2024): h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t, gates from x_t only.

    z_t is the weight of the *new* candidate, the reverse of PyTorch's GRU (where z multiplies
    h_{t−1}). The candidate is the paper's plain h̃_t = Linear(x_t) (not the log-space g(·)).
    """
    z = r.let("z", sigmoid(_input_affine(r, "z")))
    cand = r.let(r"\tilde{h}", _input_affine(r, "h"))
    return {"h": MatAdd(hadamard(one_minus(z), r.prev["h"]), hadamard(z, cand))}


def _minlstm(r: Recurrence):
    """minLSTM (Feng et al. 2024): h_t = f'_t ⊙ h_{t−1} + i'_t ⊙ h̃_t with f' + i' = 1."""
    f = r.let("f", sigmoid(_input_affine(r, "f")))
    i = r.let("i", sigmoid(_input_affine(r, "i")))
    cand = r.let(r"\tilde{h}", _input_affine(r, "h"))
    total = HadamardPower(MatAdd(f, i), -1)
    fn = r.let("f'", hadamard(f, total))
    inn = r.let("i'", hadamard(i, total))
    return {"h": MatAdd(hadamard(fn, r.prev["h"]), hadamard(inn, cand))}


# -- norm-preserving and ODE-inspired ---------------------------------------------------------
def _antisymmetric(r: Recurrence):
    """AntisymmetricRNN (Chang et al. 2019): h_t = h_{t−1} + ε tanh((W − Wᵀ − γI) h_{t−1} + U x_t + b)."""
    gamma, eps = r.const("gamma", 0.01), r.const("epsilon", 0.01)
    W = r.W()
    skew = MatAdd(W, MatMul(-1, W.T), MatMul(-1, gamma, Identity(n)))
    a = r.let("a", MatAdd(MatMul(skew, r.prev["h"]), MatMul(r.U(), r.x), r.b()))
    return {"h": MatAdd(r.prev["h"], MatMul(eps, tanh(a)))}


def _beta_matrix(M, beta, gamma):
    """(1 − β)(M + Mᵀ) + β(M − Mᵀ) − γI (Erichson et al. 2021)."""
    return MatAdd(MatMul(1 - beta, MatAdd(M, M.T)), MatMul(beta, MatAdd(M, MatMul(-1, M.T))),
                  MatMul(-1, gamma, Identity(n)))


def _lipschitz(r: Recurrence):
    """Lipschitz RNN (Erichson et al. 2021), forward Euler step of h' = A_β h + tanh(W_β h + U x + b)."""
    beta, gamma = r.const("beta", 0.8), r.const("gamma", 0.01)
    eps, alpha = r.const("epsilon", 0.01), r.const("alpha", 1.0)
    h = r.prev["h"]
    A = _beta_matrix(r.W("A", label="M_{A}"), beta, gamma)
    Wb = _beta_matrix(r.W("W", label="M_{W}"), beta, gamma)
    a = r.let("a", MatAdd(MatMul(Wb, h), MatMul(r.U(), r.x), r.b()))
    return {"h": MatAdd(h, MatMul(eps * alpha, A, h), MatMul(eps, tanh(a)))}


def _cornn(imex: bool):
    """coRNN (Rusch & Mishra 2021): y'' = tanh(W y + 𝒲 y' + V u + b) − γ y − ε y'; y is h here.

    Explicit (official code): z_t = z_{t−1} + Δt[tanh(a_t) − γ h_{t−1} − ε z_{t−1}];
    IMEX (the paper's scheme): the damping ε z_t is taken implicitly,
    z_t = (z_{t−1} + Δt[tanh(a_t) − γ h_{t−1}]) / (1 + Δt ε). Both: h_t = h_{t−1} + Δt z_t.
    """

    def recurrence(r: Recurrence):
        dt, gamma, eps = r.const(r"\Delta t", 0.042), r.const("gamma", 2.7), r.const("epsilon", 4.7)
        h, z = r.prev["h"], r.prev["z"]
        a = r.let("a", MatAdd(MatMul(r.W(), h), MatMul(r.W("z", label="W_{z}"), z),
                              MatMul(r.U(), r.x), r.b()))
        if imex:
            force = MatAdd(tanh(a), MatMul(-1, gamma, h))
            z_new = r.let("z", MatMul(1 / (1 + dt * eps), MatAdd(z, MatMul(dt, force))))
        else:
            force = MatAdd(tanh(a), MatMul(-1, gamma, h), MatMul(-1, eps, z))
            z_new = r.let("z", MatAdd(z, MatMul(dt, force)))
        return {"z": z_new, "h": MatAdd(h, MatMul(dt, z_new))}

    return recurrence


MODERN_CELLS: tuple[Cell, ...] = (
    Cell("peephole-lstm", "peephole LSTM (TF use_peepholes)", ("h", "c"), _peephole_lstm,
         bias_copies=ONE_BIAS, reference="gers2002peephole"),
    Cell("cifg", "LSTM with coupled input-forget gate (CIFG)", ("h", "c"), _cifg,
         bias_copies=ONE_BIAS, reference="greff2017odyssey"),
    Cell("slstm", "sLSTM of xLSTM (one head, unstabilised form)", ("h", "c", "n"), _slstm,
         bias_copies=ONE_BIAS, reference="beck2024xlstm"),
    Cell("slstm-normalised", "sLSTM in normalised coordinates (c = c~/n~, one head)", ("h", "c", "n"),
         _slstm_normalised, bias_copies=ONE_BIAS, reference="beck2024xlstm"),
    Cell("lru", "LRU, complex diagonal as real rotation-scaling blocks; complex state = h + i q",
         ("h", "q"), _lru, bias_copies=ONE_BIAS, reference="orvieto2023lru"),
    Cell("indrnn", "IndRNN, h_t = relu(U x_t + u * h_{t-1} + b)", ("h",), _indrnn,
         bias_copies=ONE_BIAS, reference="li2018indrnn"),
    Cell("mingru", "minGRU (z weights the candidate)", ("h",), _mingru,
         bias_copies=ONE_BIAS, reference="feng2024minimal"),
    Cell("minlstm", "minLSTM (normalised f', i')", ("h",), _minlstm,
         bias_copies=ONE_BIAS, reference="feng2024minimal"),
    Cell("antisymmetric-rnn", "AntisymmetricRNN", ("h",), _antisymmetric,
         bias_copies=ONE_BIAS, reference="chang2019antisymmetric"),
    Cell("lipschitz-rnn", "Lipschitz RNN (forward Euler)", ("h",), _lipschitz,
         bias_copies=ONE_BIAS, reference="erichson2021lipschitz"),
    Cell("cornn", "coRNN, explicit damping (official code); state (y, z) = (h, z)", ("h", "z"),
         _cornn(imex=False), bias_copies=ONE_BIAS, reference="rusch2021cornn"),
    Cell("cornn-imex", "coRNN, IMEX damping (paper); state (y, z) = (h, z)", ("h", "z"),
         _cornn(imex=True), bias_copies=ONE_BIAS, reference="rusch2021cornn"),
    *XLSTM_EXPRNN_CELLS,
)

MODERN_ALIASES = {"peephole": "peephole-lstm", "antisymmetricrnn": "antisymmetric-rnn",
                  "asymrnn": "antisymmetric-rnn", "lipschitzrnn": "lipschitz-rnn",
                  **XLSTM_EXPRNN_ALIASES}

# -- diagonal state-space recurrences (S4D, Mamba/S6, RG-LRU): gradflow/_symbolic/ssm_cells.py --
from .ssm_cells import SSM_ALIASES, SSM_CELLS  # noqa: E402

MODERN_CELLS = MODERN_CELLS + SSM_CELLS
MODERN_ALIASES.update(SSM_ALIASES)

# -- xLSTM's mLSTM (matrix memory, vec C a state of size n²): gradflow/_symbolic/mlstm.py --
from .mlstm import MLSTM_ALIASES, MLSTM_CELLS  # noqa: E402

MODERN_CELLS = MODERN_CELLS + MLSTM_CELLS
MODERN_ALIASES.update(MLSTM_ALIASES)
