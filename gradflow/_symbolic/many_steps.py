"""Many steps: the product ∂s_t/∂s_k, the Pascanu bound, the LSTM's carousel, truncation.

    ∂s_t/∂s_k = ∂s_t/∂s_{t−1} · ∂s_{t−1}/∂s_{t−2} ⋯ ∂s_{k+1}/∂s_k = ∏_{j=k+1}^{t} J_j   (J_t leftmost)

For an Elman cell J_j = diag(φ'(a_j)) W, so ‖∂h_t/∂h_k‖ ≤ ∏ ‖diag(φ'(a_j))‖ ‖W‖ ≤ (γ σ_max(W))^{t−k}
with γ = sup|φ'| (Pascanu, Mikolov & Bengio 2013). For the LSTM the c→c block is diag(f_j), so
along the cell state alone ∂c_t/∂c_k = diag(f_{k+1} ⊙ ⋯ ⊙ f_t): no weight matrix, no φ', and for
the 1997 cell (no forget gate) the identity — the constant error carousel.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy import (
    BlockMatrix,
    HadamardPower,
    HadamardProduct,
    Identity,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    ZeroMatrix,
)
from sympy.matrices.expressions.matexpr import MatrixExpr

from .._checks import GradflowError
from .cell import Cell, StateJacobian, n, t, timed
from .cells import get_cell
from .nodes import Diag, Elementwise
from .printing import DisplaysLatex, latex, text

#: the earlier time k and the running product index j
k = sp.Symbol("k", integer=True)
j = sp.Symbol("j", integer=True)
#: k + 1 and t − k, kept in reading order for printing
_k1 = sp.Add(k, sp.S.One, evaluate=False)
_lag = sp.Add(t, -k, evaluate=False)


class _OverTime(MatrixExpr):
    """An operator over j = lo … hi applied to a body written at time j (printing only)."""

    _latex_op = ""
    _text_op = ""

    def __new__(cls, body, index, lo, hi):
        return super().__new__(cls, body, index, sp.sympify(lo), sp.sympify(hi))

    @property
    def shape(self):
        return self.args[0].shape

    def _latex(self, printer):
        body, index, lo, hi = self.args
        return r"%s_{%s=%s}^{%s} %s" % (self._latex_op, printer._print(index), printer._print(lo),
                                       printer._print(hi), self._wrap(printer._print(body)))

    def _wrap(self, body: str) -> str:
        return body

    def _sympystr(self, printer):
        body, index, lo, hi = self.args
        return "%s_{%s=%s..%s}%s" % (self._text_op, index, lo, hi, self._wrap_text(text(body)))

    def _wrap_text(self, body: str) -> str:
        return " " + body


class TimeOrderedProduct(_OverTime):
    """∏_{j=lo}^{hi} body_j with the latest factor on the left (a product of Jacobians)."""

    _latex_op, _text_op = r"\prod", "prod"

    def _wrap(self, body: str) -> str:
        return r"\left(%s\right)" % body

    def _wrap_text(self, body: str) -> str:
        return "[%s]" % body


class TimeHadamardProduct(_OverTime):
    """⊙_{j=lo}^{hi} v_j, the entry-wise product of a vector over time."""

    _latex_op, _text_op = r"\bigodot", "⊙"

    def _wrap(self, body: str) -> str:  # ⊙_j (1 − i_j), not ⊙_j 1 − i_j
        return r"\left(%s\right)" % body if isinstance(self.args[0], (MatAdd, sp.Add)) else body

    def _wrap_text(self, body: str) -> str:
        return " (%s)" % body if isinstance(self.args[0], (MatAdd, sp.Add)) else " " + body


def _as_matrix(J: StateJacobian) -> MatrixExpr:
    """The one-step Jacobian as one matrix (a BlockMatrix for two states)."""
    states = J.cell.states
    if len(states) == 1:
        return J[states[0], states[0]]
    return BlockMatrix([[J[a, b] for b in states] for a in states])


@dataclass(frozen=True)
class StateProduct(DisplaysLatex):
    """∂s_t/∂s_k = ∏_{j=k+1}^{t} ∂s_j/∂s_{j−1} for a cell.

    Attributes:
        cell: the cell.
        expr: the symbolic product (printable, LaTeX).
    """

    cell: Cell
    expr: MatrixExpr

    def explicit(self, t_value: int, k_value: int) -> MatrixExpr:
        """The product written out for concrete t > k: J_t · J_{t−1} ⋯ J_{k+1}."""
        if t_value <= k_value:
            raise GradflowError(f"need t > k, got t={t_value}, k={k_value}")
        factors = [_as_matrix(self.cell.jacobian(sp.Integer(s))) for s in range(t_value, k_value, -1)]
        return factors[0] if len(factors) == 1 else MatMul(*factors)

    def latex(self) -> str:
        s = self.cell.states
        lhs = r"\frac{\partial %s}{\partial %s}" % tuple(
            ("(%s)" % ", ".join(timed(x, tt) for x in s)) if len(s) > 1 else timed(s[0], tt)
            for tt in (t, k))
        return "%s = %s" % (lhs, latex(self.expr))

def state_product(cell: str | Cell) -> StateProduct:
    """The symbolic product ∂s_t/∂s_k = ∏_{j=k+1}^{t} J_j (J_t leftmost) of a cell."""
    cell = get_cell(cell)
    return StateProduct(cell, TimeOrderedProduct(_as_matrix(cell.jacobian(j)), j, _k1, t))


# -- the bound --------------------------------------------------------------------------------
def _scalar(v, defs: dict, stand_in: dict):
    """The vector expression v as one entry: named quantities become φ(x) of a free real x."""
    if isinstance(v, OneMatrix):
        return sp.S.One
    if isinstance(v, MatAdd):
        return sp.Add(*[_scalar(a, defs, stand_in) for a in v.args])
    if isinstance(v, MatMul):
        return sp.Mul(*[a if not isinstance(a, MatrixExpr) else _scalar(a, defs, stand_in)
                        for a in v.args])
    if isinstance(v, HadamardProduct):
        return sp.Mul(*[_scalar(a, defs, stand_in) for a in v.args])
    if isinstance(v, HadamardPower):
        return _scalar(v.base, defs, stand_in) ** v.exp
    if isinstance(v, Elementwise):
        return v.activation.scalar(_scalar(v.arg, defs, stand_in))
    if isinstance(v, MatrixSymbol):
        if v not in stand_in:
            d = defs.get(v)
            x = sp.Symbol("x_%d" % len(stand_in), real=True)
            # q = φ(anything): the range of φ; any other quantity: the whole real line
            stand_in[v] = d.activation.scalar(x) if isinstance(d, Elementwise) else x
        return stand_in[v]
    raise GradflowError(f"no scalar form for {v}")


def _sup_factors(expr, relax: bool):
    """sup |expr| for a product whose factors each hold one free variable (∞ otherwise).

    ``relax``: a factor f(g(x, y, …)) of a bounded scalar function f of one argument is bounded by
    sup_z |f(z)| over every real z (a superset of the values g takes): modReLU′ = H(|a| + b) ≤ 1
    whatever the bias b.
    """
    from .activations import sup_abs

    factors = expr.args if isinstance(expr, sp.Mul) else (expr,)
    total = sp.S.One
    groups: dict = {}
    for f in factors:
        fs = f.free_symbols
        if len(fs) > 1 and relax and isinstance(f, sp.Function) and f.args and \
                not any(a.free_symbols for a in f.args[1:]):
            z = sp.Dummy("z", real=True)
            try:
                bound = sup_abs(f.func(z, *f.args[1:]), z)
            except NotImplementedError:
                return sp.oo
            if not bound.is_finite:  # f itself unbounded: the relaxation proves nothing
                return sp.oo
            total *= bound
            continue
        if len(fs) > 1:
            return sp.oo
        key = next(iter(fs)) if fs else None
        groups[key] = groups.get(key, sp.S.One) * f
    for x, g in groups.items():
        if x is None:
            total *= sp.Abs(g)
            continue
        try:  # sign(x) as its pieces (1, −1, 0), which sup_abs takes one at a time
            total *= sup_abs(g.rewrite(sp.Piecewise) if g.has(sp.sign) else g, x)
        except NotImplementedError:  # SymPy finds no maximum: no bound claimed
            return sp.oo
    return sp.simplify(total)


def _sup(v, defs: dict):
    """sup |v| over every value its named quantities can take (∞ if unbounded)."""
    stand_in: dict = {}
    raw = _scalar(v, defs, stand_in)
    expr = sp.simplify(raw)
    if not expr.free_symbols:
        return sp.Abs(expr)
    best = _sup_factors(expr, relax=False)
    if best is sp.oo or best.has(sp.oo):  # the factors as written, each bounded on its own
        best = _sup_factors(raw, relax=True)
    return best


@dataclass(frozen=True)
class Bound(DisplaysLatex):
    """‖∂h_t/∂h_k‖₂ ≤ rate^{t−k}, derived from the one-step Jacobian's terms.

    Attributes:
        cell: the cell.
        terms: ((sup |v|, M)) for each term diag(v)·M of ∂h_t/∂h_{t−1} (M = I for a bare diag).
        rate: Σ sup|v| · σ_max(M) (a SymPy expression in σ_max(W) symbols).
        expr: rate**(t − k).
        gamma: sup|v| of a single term diag(v)·M (γ = sup|φ'| for an Elman cell, M = W; IndRNN's
            M = diag(u), expRNN's M = exp(A − Aᵀ)); None for a sum of terms.
    """

    cell: Cell
    terms: tuple
    rate: sp.Expr
    expr: sp.Expr
    gamma: sp.Expr | None

    def latex(self) -> str:
        return (r"\left\| \frac{\partial h_{t}}{\partial h_{k}} \right\|_2 \le %s"
                % latex(self.expr))

class SigmaMax(sp.Function):
    """σ_max(M), the largest singular value of the matrix M (prints as σ_max(W), \\sigma_{\\max}(W))."""

    nargs = 1
    is_real = True
    is_positive = True

    def _latex(self, printer, exp=None):
        M = self.args[0]
        if isinstance(M, Diag) and isinstance(M.vector, MatrixSymbol):  # ‖diag(u)‖₂ = max_i |u_i|
            body = r"\max_i |%s_i|" % printer._print(M.vector)
            return body if exp is None else r"\left(%s\right)^{%s}" % (body, exp)
        body = r"\sigma_{\max}(%s)" % printer._print(M)
        return body if exp is None else r"%s^{%s}" % (body, exp)

    def _sympystr(self, printer):
        M = self.args[0]
        if isinstance(M, Diag) and isinstance(M.vector, MatrixSymbol):
            return "max|%s|" % text(M.vector)
        return "sigma_max(%s)" % text(M)


def is_skew(S) -> bool:
    """True when S + Sᵀ is the zero matrix as written (A − Aᵀ): then exp(S) is orthogonal."""
    total = MatAdd(S, S.T).doit()
    return isinstance(total, ZeroMatrix) or total == 0


def sigma_max(M) -> sp.Expr:
    """σ_max(M) as a positive SymPy expression; 1 for exp(S) with S skew-symmetric as written.

    exp(S)ᵀ exp(S) = exp(Sᵀ) exp(S) = exp(−S) exp(S) = I, so every singular value is 1
    (expRNN's W = exp(A − Aᵀ)).
    """
    from .nodes import MatrixExp

    if isinstance(M, MatrixExp) and is_skew(M.arg):
        return sp.S.One
    return SigmaMax(M)


def pascanu_bound(cell: str | Cell) -> Bound:
    """‖∂h_t/∂h_k‖₂ ≤ (Σ_terms sup|v|·σ_max(M))^{t−k} for a single-state cell.

    For an Elman cell J = diag(φ'(a_t)) W this is (γ σ_max(W))^{t−k} with γ = sup|φ'|:
    1 for tanh and ReLU, 1/4 for the logistic sigmoid. Raises ``ValueError`` where a factor of
    the one-step Jacobian is unbounded (no finite bound from the one-step form).
    """
    cell = get_cell(cell)
    if cell.states != ("h",):
        raise GradflowError(f"{cell.name}: the bound is derived for single-state cells (h only)")
    J = cell.jacobian()
    defs = dict(J.step.definitions)
    elementwise = {p.symbol for p in J.step.params if p.kind == "w"}
    block = J["h", "h"]
    terms = []
    for term in block.args if isinstance(block, MatAdd) else (block,):
        coeff, factors = sp.S.One, [term]
        if isinstance(term, MatMul):
            coeff = sp.Mul(*[a for a in term.args if not isinstance(a, MatrixExpr)])
            factors = [a for a in term.args if isinstance(a, MatrixExpr)]
        if isinstance(factors[0], Identity):
            sup, rest = sp.Abs(coeff), factors[1:]
        elif isinstance(factors[0], Diag):
            # an element-wise recurrent weight w in the diagonal (IndRNN's φ'(a_t) ⊙ u) is a matrix
            # diag(w) of the bound, ‖diag(w)‖₂ = max_i |w_i|, not a quantity to take the sup of
            vec = factors[0].vector
            parts = list(vec.args) if isinstance(vec, HadamardProduct) else [vec]
            weights = [p for p in parts if p in elementwise]
            others = [p for p in parts if p not in elementwise]
            left = others[0] if len(others) == 1 else (HadamardProduct(*others) if others else None)
            sup = sp.Abs(coeff) * (_sup(left, defs) if left is not None else sp.S.One)
            rest = [Diag(w) for w in weights] + factors[1:]
        else:
            sup, rest = sp.Abs(coeff), factors
        if sup is sp.oo or sup.has(sp.oo):
            raise GradflowError(
                f"{cell.name}: a factor of ∂h_t/∂h_(t-1) is unbounded; no finite bound from the one-step form")
        M = rest[0] if len(rest) == 1 else (MatMul(*rest) if rest else Identity(n))
        terms.append((sup, M))
    rate = sp.Add(*[s * (1 if isinstance(M, Identity) else sigma_max(M)) for s, M in terms])
    gamma = terms[0][0] if len(terms) == 1 else None
    return Bound(cell, tuple(terms), rate, sp.Pow(rate, _lag, evaluate=False), gamma)


# -- the LSTM's cell-state path ---------------------------------------------------------------
@dataclass(frozen=True)
class Carousel(DisplaysLatex):
    """∂c_t/∂c_k along the cell state alone (gates held fixed): ∏_{j=k+1}^{t} ∂c_j/∂c_{j−1}.

    Attributes:
        cell: the cell.
        step: the one-step block ∂c_j/∂c_{j−1} (diag(f_j), or I for the 1997 cell).
        expr: the product over j = k+1…t (diag(⊙_j f_j), or I: the constant error carousel).
        constant: True when the one-step block is the identity (no decay at all).
    """

    cell: Cell
    step: MatrixExpr
    expr: MatrixExpr
    constant: bool

    def latex(self) -> str:
        return r"\left.\frac{\partial c_{t}}{\partial c_{k}}\right|_{\text{carousel}} = %s" % latex(self.expr)

def carousel(cell: str | Cell) -> Carousel:
    """The cell-state path of an LSTM-type cell: ∏ diag(f_j), the identity when f ≡ 1 (1997)."""
    cell = get_cell(cell)
    if "c" not in cell.states:
        raise GradflowError(f"{cell.name} has no cell state c; the carousel is an LSTM notion")
    body = cell.jacobian(j)["c", "c"]
    if isinstance(body, Identity):
        return Carousel(cell, body, Identity(n), True)
    if isinstance(body, Diag):
        return Carousel(cell, body, Diag(TimeHadamardProduct(body.vector, j, _k1, t)), False)
    return Carousel(cell, body, TimeOrderedProduct(body, j, _k1, t), False)


def truncated_jacobian(cell: str | Cell) -> StateJacobian:
    """Hochreiter & Schmidhuber's (1997) truncated one-step Jacobian.

    Error flow through the recurrent inputs h_{t−1} of the gates and cell input is cut: every
    block ∂(·)_t/∂h_{t−1} is set to 0, leaving ∂h_t/∂c_{t−1} and ∂c_t/∂c_{t−1}. The product
    over time of the c→c block is then exactly the carousel: ∂c_t/∂c_k = ∏ diag(f_j) (I in 1997).
    """
    cell = get_cell(cell)
    if "c" not in cell.states:
        raise GradflowError(f"{cell.name} has no cell state; truncation (1997) applies to LSTM cells")
    J = cell.jacobian()
    blocks = {key: (ZeroMatrix(n, n) if key[1] == "h" else v) for key, v in J.blocks.items()}
    return StateJacobian(cell, J.step, blocks)
