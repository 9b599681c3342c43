"""gradflow's matrix chain rule (``gradflow.jacobian``, ``gradflow.total_derivatives``) on its own.

Oracle: SymPy's element-wise ``Matrix.jacobian``. Every expression is made explicit at a
concrete size (n → 2 or 3, m → 2): each ``MatrixSymbol`` becomes a matrix of real scalar
symbols, and the *forward* expression is written out entry by entry by this file's own
evaluator (:func:`explicit`), which applies the textbook scalar functions (tanh,
1/(1 + e^{−x}), max(0, x)) and never calls gradflow's chain rule or its ``_entry`` code.
SymPy then differentiates the explicit entries w.r.t. the explicit entries of the vector.

gradflow's side is its Jacobian, made explicit the ordinary SymPy way:
``J.subs({n: N, m: M}).xreplace(leaves).as_explicit()`` (this goes through gradflow's own
``Diag``/``Elementwise`` ``_entry``; those are checked separately against the textbook
definitions below). Entries must satisfy ``simplify(a − b) == 0``.

ReLU: SymPy differentiates Max(0, u) to Heaviside(u), whose value at 0 is 1/2; gradflow uses
H(0) = 0 (PyTorch's subgradient). The two are compared after writing both as Heaviside(u)
(equal for every u ≠ 0); the value at 0 is checked against PyTorch in test_jacobians_torch.py.
"""

from __future__ import annotations

import pytest
import sympy as sp
from _oracle import SCALAR, _heaviside_common, abstract_transcendentals, entries_of, explicit
from sympy import (
    HadamardPower,
    HadamardProduct,
    Identity,
    ImmutableMatrix,
    Lambda,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    ZeroMatrix,
)

from gradflow import Diag, Elementwise, hadamard, jacobian, m, n, relu, sigmoid, tanh, total_derivatives

# --------------------------------------------------------------------------------------------
# symbols and helpers
# --------------------------------------------------------------------------------------------

h = MatrixSymbol("h", n, 1)
x = MatrixSymbol("x", m, 1)
c = MatrixSymbol("c", n, 1)
u = MatrixSymbol("u", n, 1)
b = MatrixSymbol("b", n, 1)
W = MatrixSymbol("W", n, n)
A = MatrixSymbol("A", n, n)
B = MatrixSymbol("B", n, n)
U = MatrixSymbol("U", n, m)
V = MatrixSymbol("V", m, n)
LEAVES = (h, x, c, u, b, W, A, B, U, V)


def one_minus(v):
    """1 − v (ones vector minus v)."""
    return MatAdd(OneMatrix(v.shape[0], 1), MatMul(-1, v))


def check_against_oracle(expr, wrt, N, M=2, definitions=None, got=None):
    """gradflow's ∂expr/∂wrt equals SymPy's element-wise Jacobian at n = N, m = M."""
    sizes = {n: N, m: M}
    leaves = {s.name: entries_of(s, sizes) for s in LEAVES}
    for name, defn in (definitions or {}).items():  # named intermediates, in order
        leaves[name.name] = explicit(defn, leaves, sizes)
    forward = explicit(expr, leaves, sizes)
    oracle = forward.jacobian(list(leaves[wrt.name]))

    J = jacobian(expr, wrt, definitions) if got is None else got
    assert J.shape == (expr.shape[0], wrt.shape[0])
    concrete = {sp.MatrixSymbol(k, *v.shape): v for k, v in leaves.items()}
    ours = J.subs(sizes).xreplace(concrete).as_explicit()

    assert ours.shape == oracle.shape
    for i in range(oracle.rows):
        for j in range(oracle.cols):
            assert_same(ours[i, j], oracle[i, j])
    return J


#: above this many operations, simplify(a − b) on the raw entries is skipped (seconds each)
RAW_SIMPLIFY_MAX_OPS = 120


def assert_same(a, b):
    """a ≡ b: the abstracted difference cancels exactly; small cases also simplify(a − b) == 0."""
    a, b = _heaviside_common(a), _heaviside_common(b)
    d = a - b
    assert sp.cancel(sp.together(abstract_transcendentals(d))) == 0, (a, b)
    if sp.count_ops(a) + sp.count_ops(b) <= RAW_SIMPLIFY_MAX_OPS:
        assert sp.simplify(d) == 0, (a, b)


# --------------------------------------------------------------------------------------------
# the chain rule against the oracle
# --------------------------------------------------------------------------------------------

CASES = {
    # sums and products by constant matrices
    "identity": (h, h),
    "sum_const": (MatAdd(MatMul(A, h), MatMul(B, h), b), h),
    "scaled_sum": (MatAdd(MatMul(2, A, h), MatMul(-3, h), b), h),
    "rational_coeff": (MatMul(sp.Rational(1, 3), W, h), h),
    "matvec_chain": (MatMul(A, B, h), h),
    "matvec_transpose": (MatMul(W.T, h), h),
    "matvec_rect_out": (MatMul(V, h), h),  # m × n Jacobian
    "matvec_rect_in": (MatAdd(MatMul(U, x), b), x),  # n × m Jacobian
    "row_output": (MatMul(c.T, h), h),  # 1 × n
    "outer_const": (MatMul(W, MatAdd(h, MatMul(A, h))), h),
    # Hadamard products
    "hadamard_const": (hadamard(c, h), h),
    "hadamard_both": (hadamard(MatMul(A, h), MatAdd(MatMul(B, h), b)), h),
    "hadamard_self": (hadamard(h, h), h),
    "hadamard_three": (hadamard(h, MatMul(A, h), c), h),
    "hadamard_power2": (HadamardPower(h, 2), h),
    "hadamard_power3": (HadamardPower(MatMul(A, h), 3), h),
    "hadamard_sum_same_tail": (MatAdd(hadamard(c, h), MatMul(2, hadamard(u, h)), h), h),
    "hadamard_cancel_partly": (MatAdd(hadamard(c, h), MatMul(-1, hadamard(c, h)), hadamard(u, h)), h),
    # element-wise activations
    "tanh": (tanh(MatAdd(MatMul(W, h), b)), h),
    "sigmoid": (sigmoid(MatAdd(MatMul(W, h), b)), h),
    "relu": (relu(MatAdd(MatMul(W, h), b)), h),
    "tanh_of_input": (tanh(MatAdd(MatMul(U, x), MatMul(W, h))), x),
    "sigmoid_hadamard_c": (hadamard(sigmoid(MatAdd(MatMul(W, h), b)), c), h),
    # nested combinations
    "tanh_tanh": (tanh(tanh(h)), h),
    "matrix_after_tanh": (MatMul(A, tanh(MatMul(W, h))), h),
    "tanh_of_gated": (tanh(MatAdd(MatMul(W, hadamard(sigmoid(MatMul(A, h)), h)), b)), h),
    "sigmoid_of_mix": (sigmoid(MatAdd(hadamard(tanh(MatMul(A, h)), c), MatMul(B, tanh(h)))), h),
    "relu_mix": (MatAdd(MatMul(A, relu(MatMul(W, h))), hadamard(h, tanh(MatMul(B, h)))), h),
    "gru_like": (
        MatAdd(
            hadamard(one_minus(sigmoid(MatMul(A, h))),
                     tanh(MatAdd(MatMul(U, x), hadamard(sigmoid(MatMul(B, h)), MatAdd(MatMul(W, h), b))))),
            hadamard(sigmoid(MatMul(A, h)), h),
        ),
        h,
    ),
    "lstm_like": (
        hadamard(sigmoid(MatMul(A, h)),
                 tanh(MatAdd(hadamard(sigmoid(MatMul(B, h)), c), hadamard(sigmoid(MatMul(W, h)), tanh(h))))),
        h,
    ),
}


@pytest.mark.parametrize("N", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_chain_rule_matches_elementwise_jacobian(case, N):
    expr, wrt = CASES[case]
    check_against_oracle(expr, wrt, N)


@pytest.mark.parametrize("case", ["sum_const", "hadamard_both", "tanh", "sigmoid", "relu",
                                  "matvec_rect_in", "gru_like"])
def test_chain_rule_at_n3(case):
    expr, wrt = CASES[case]
    check_against_oracle(expr, wrt, 3)


def test_jacobian_of_identity_is_identity():
    assert jacobian(h, h) == Identity(n)


# --------------------------------------------------------------------------------------------
# named intermediates
# --------------------------------------------------------------------------------------------

a_ = MatrixSymbol("a", n, 1)
y_ = MatrixSymbol("y", n, 1)
r_ = MatrixSymbol("r", n, 1)
z_ = MatrixSymbol("z", n, 1)
g_ = MatrixSymbol("g", n, 1)
q_ = MatrixSymbol("q", n, 1)


def _defs_elman():
    return {a_: MatAdd(MatMul(W, h), b), y_: tanh(a_)}


def _defs_gated():
    return {
        r_: sigmoid(MatMul(A, h)),
        z_: sigmoid(MatMul(B, h)),
        q_: MatMul(U, x),  # does not depend on h
        g_: tanh(MatAdd(MatMul(W, hadamard(r_, h)), q_)),
    }


@pytest.mark.parametrize("N", [1, 2, 3])
def test_named_intermediates_elman(N):
    defs = _defs_elman()
    expr = MatAdd(hadamard(y_, c), MatMul(A, y_))
    J = check_against_oracle(expr, h, N, definitions=defs)
    # the result is written with the names (tanh' through its output y)
    assert y_ in J.free_symbols


@pytest.mark.parametrize("N", [1, 2])
def test_named_intermediates_gated(N):
    defs = _defs_gated()
    expr = MatAdd(hadamard(one_minus(z_), g_), hadamard(z_, h))
    check_against_oracle(expr, h, N, definitions=defs)


@pytest.mark.parametrize("N", [1, 2])
def test_named_expression_is_a_name(N):
    defs = _defs_elman()
    check_against_oracle(y_, h, N, definitions=defs)


@pytest.mark.parametrize("N", [1, 2])
def test_total_derivatives_each_named_quantity(N):
    defs = _defs_gated()
    D = total_derivatives(defs, h)
    assert list(D) == list(defs)
    for name in defs:
        check_against_oracle(name, h, N, definitions=defs, got=D[name])
    assert isinstance(D[q_], ZeroMatrix) and D[q_].shape == (n, n)


# --------------------------------------------------------------------------------------------
# explicit expansion of gradflow's own nodes (used by the derived blocks at concrete n)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tanh", "sigmoid", "relu", "step"])
def test_elementwise_entries_are_the_textbook_functions(name):
    v = MatrixSymbol("v", n, 1)
    vals = entries_of(v, {n: 3})
    got = Elementwise(name, v).subs({n: 3}).xreplace({MatrixSymbol("v", 3, 1): vals}).as_explicit()
    for i in range(3):
        assert sp.simplify(got[i, 0] - SCALAR[name](vals[i, 0])) == 0


def test_exported_activations_are_elementwise_nodes():
    for fn, name in ((tanh, "tanh"), (sigmoid, "sigmoid"), (relu, "relu")):
        e = fn(h)
        assert isinstance(e, Elementwise) and e.args[0].name == name and e.shape == (n, 1)


def test_diag_entries():
    v = MatrixSymbol("v", n, 1)
    vals = entries_of(v, {n: 3})
    got = Diag(v).subs({n: 3}).xreplace({MatrixSymbol("v", 3, 1): vals}).as_explicit()
    assert got == sp.diag(*list(vals))


def test_relu_derivative_at_zero_is_zero():
    """gradflow's relu'(0) = 0 (PyTorch's subgradient), SymPy's d Max(0,u)/du at 0 is 1/2."""
    sizes = {n: 2}
    hv = ImmutableMatrix([[1], [2]])
    Wv = ImmutableMatrix([[2, -1], [1, 1]])  # row 0 of W h is exactly 0
    J = jacobian(relu(MatMul(W, h)), h)
    got = J.subs(sizes).xreplace({MatrixSymbol("W", 2, 2): Wv, MatrixSymbol("h", 2, 1): hv}).as_explicit()
    assert got == ImmutableMatrix([[0, 0], [1, 1]])


# --------------------------------------------------------------------------------------------
# the SymPy limit gradflow exists for
# --------------------------------------------------------------------------------------------

def test_sympy_own_matrix_derivative_fails_on_sigmoid_hadamard():
    """SymPy 1.14: d(σ(W h + b) ⊙ c)/dh raises. If this starts passing, SymPy fixed it."""
    t = sp.Dummy("t")
    sig = MatAdd(MatMul(W, h), b).applyfunc(Lambda(t, 1 / (1 + sp.exp(-t))))
    with pytest.raises(ValueError, match="index is larger than expression shape"):
        HadamardProduct(sig, c).diff(h)


@pytest.mark.parametrize("N", [1, 2, 3])
def test_gradflow_handles_the_sympy_limit_case(N):
    # the oracle's forward uses SymPy's own applyfunc expression; gradflow's uses its sigmoid
    t = sp.Dummy("t")
    sympy_form = HadamardProduct(MatAdd(MatMul(W, h), b).applyfunc(Lambda(t, 1 / (1 + sp.exp(-t)))), c)
    gradflow_form = hadamard(sigmoid(MatAdd(MatMul(W, h), b)), c)
    check_against_oracle(sympy_form, h, N, got=jacobian(gradflow_form, h))


# --------------------------------------------------------------------------------------------
# what does not depend on the variable, what is not supported, what is not a vector
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "expr, wrt",
    [
        (MatAdd(MatMul(U, x), b), h),
        (tanh(MatMul(W, c)), h),
        (hadamard(c, sigmoid(b)), h),
        (MatMul(V, c), h),  # m × n zero
        (MatMul(W, h), x),  # n × m zero
    ],
)
def test_independent_expression_gives_zero_matrix(expr, wrt):
    J = jacobian(expr, wrt)
    assert isinstance(J, ZeroMatrix)
    assert J.shape == (expr.shape[0], wrt.shape[0])


def test_independent_named_intermediate_gives_zero_matrix():
    J = jacobian(tanh(q_), h, {q_: MatMul(U, x)})
    assert isinstance(J, ZeroMatrix) and J.shape == (n, n)


@pytest.mark.parametrize(
    "expr",
    [
        MatMul(Diag(h), c),  # the variable inside a matrix factor
        MatMul(h, h.T, c),
        MatMul(W, h, h.T, c),
        MatMul(A, Diag(tanh(h)), c),
        MatAdd(MatMul(W, h), b).applyfunc(Lambda(sp.Dummy("t"), sp.exp(sp.Dummy("t")))),
    ],
    ids=["diag_h_c", "outer_h_h_c", "W_outer_c", "A_diag_tanh_c", "sympy_applyfunc"],
)
def test_unsupported_forms_raise_not_implemented(expr):
    with pytest.raises(NotImplementedError):
        jacobian(expr, h)


@pytest.mark.parametrize(
    "expr, wrt",
    [
        (MatMul(W, h), W),  # w.r.t. a matrix
        (W, h),  # a matrix-valued expression
        (MatMul(A, W), h),
        (h.T, h),  # a row vector
        (h, h.T),
    ],
)
def test_non_vectors_raise_value_error(expr, wrt):
    with pytest.raises(ValueError):
        jacobian(expr, wrt)


# --------------------------------------------------------------------------------------------
# scalar symbolic coefficients
# --------------------------------------------------------------------------------------------

alpha, beta = sp.symbols("alpha beta", real=True)


@pytest.mark.parametrize(
    "expr",
    [
        pytest.param(MatMul(alpha, tanh(MatMul(W, h))), id="scaled"),
        pytest.param(MatAdd(MatMul(alpha, h), MatMul(beta, W, h)), id="two_tails"),
        # same tail (the identity) with different Hadamard factors: diag(α·1 + u)
        pytest.param(MatAdd(MatMul(alpha, h), hadamard(u, h)), id="leaky_same_tail"),
        pytest.param(MatAdd(MatMul(alpha, hadamard(u, h)), MatMul(beta, hadamard(c, h))),
                     id="two_scaled_gates"),
    ],
)
def test_symbolic_scalar_coefficients(expr):
    """Scalar symbols multiplying vectors (the chain rule's coefficients c_k are SymPy scalars).

    Known failure (gradflow bug): when two terms share a tail, ``_chain._vector_sum`` sorts
    the summands with ``bool(coeff < 0)``, which raises TypeError for a symbolic coefficient.
    """
    check_against_oracle(expr, h, 2)


# --------------------------------------------------------------------------------------------
# the oracle comparison is not vacuous
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "expr, wrong",
    [
        # transposed weight
        (tanh(MatMul(W, h)), MatMul(Diag(one_minus(hadamard(tanh(MatMul(W, h)), tanh(MatMul(W, h))))), W.T)),
        # tanh' used where σ' belongs
        (sigmoid(MatMul(W, h)),
         MatMul(Diag(one_minus(hadamard(sigmoid(MatMul(W, h)), sigmoid(MatMul(W, h))))), W)),
        # product rule with a term missing
        (hadamard(MatMul(A, h), MatMul(B, h)), MatMul(Diag(MatMul(B, h)), A)),
    ],
    ids=["transposed", "wrong_derivative", "missing_term"],
)
def test_oracle_rejects_a_wrong_jacobian(expr, wrong):
    with pytest.raises(AssertionError):
        check_against_oracle(expr, h, 2, got=wrong)


def test_sympy_diff_on_gradflow_nodes_points_to_gradflow_jacobian():
    """SymPy's own ``.diff`` does not know Elementwise/Diag: a clear NotImplementedError, not a
    wrong result and not a RecursionError."""
    for expr in (tanh(W * h), MatMul(W, sigmoid(W * h)), hadamard(relu(W * h), c)):
        with pytest.raises(NotImplementedError, match="gradflow.jacobian"):
            expr.diff(h)
