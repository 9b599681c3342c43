"""A worked derivation for teaching: one Jacobian block from index form to matrix form, and the
one-unit walk-through of Bengio et al. (1994) and Pascanu et al. (2013) with measured numbers.

The matrix forms are printed from the symbolic core (:meth:`Cell.jacobian`); the step from the
index form to the matrix form is checked element by element with SymPy at n = 2 before it is
printed; the walk-through's numbers come from the numeric engine on a one-unit network.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from .._symbolic.cell import Cell
from .._symbolic.cells import get_cell
from .._symbolic.nodes import Diag
from .._symbolic.printing import latex
from .document import Doc, Row, fmt_num

#: the one-unit walk-through: (w, h_0) pairs, zero input and bias, T steps
WALK = ((0.9, 0.5), (1.5, 0.5), (1.5, 0.0), (3.0, 0.5))
WALK_STEPS = 30


def _elementwise_check() -> bool:
    """∂h_t/∂h_{t−1} of h_t = tanh(W h_{t−1} + U x_t + b) equals diag(1 − h_t²) W at n = 2, entry by entry."""
    W = sp.Matrix(2, 2, sp.symbols("W11 W12 W21 W22"))
    U = sp.Matrix(2, 1, sp.symbols("U1 U2"))
    b = sp.Matrix(2, 1, sp.symbols("b1 b2"))
    hp = sp.Matrix(2, 1, sp.symbols("p1 p2"))
    x = sp.Symbol("x")
    h = (W * hp + U * x + b).applyfunc(sp.tanh)
    J = h.jacobian(hp)
    M = sp.diag(*[1 - h[i] ** 2 for i in range(2)]) * W
    return all(sp.simplify(sp.expand_trig(J[i, j] - M[i, j])) == 0 for i in range(2) for j in range(2))


def walk_through(w: float, h0: float, steps: int = WALK_STEPS) -> dict:
    """The one-unit tanh RNN h_t = tanh(w h_{t−1}) from h_0: measured rate, h_T, w (1 − h_T²)."""
    from .._numeric.flow import decay_rate, gradient_flow
    from .._numeric.network import Network
    from .._numeric.weights import Weights

    cell = get_cell("tanh-rnn")
    net = Network(Weights(cell, 1, 1, {"W": np.array([[w]]), "U": np.zeros((1, 1)), "b": np.zeros(1)}))
    x = np.zeros((steps, 1, 1))
    init = {"h": np.array([[h0]])}
    flow = gradient_flow(net, x, initial=init, lyapunov=False, bound=False)
    hT = float(np.asarray(net.unroll(x, init).states[-1])[0, 0])
    factor = w * (1 - hT ** 2)
    curve = flow.full.mean().log10_norm_2
    return {"w": w, "h0": h0, "h_T": hT, "factor": factor, "rate": decay_rate(curve),
            "log10_total": float(curve[0])}


def _cell_state_example(cell: Cell) -> tuple[str, str, str, str, str] | None:
    """The cell-state example of ``cell``, read off its recurrence, when it has the form
    c_t = v_t ⊙ c_{t−1} + (terms) with v_t and the terms free of c_{t−1}, so that ∂c_t/∂c_{t−1} =
    diag(v_t): (name, LaTeX of the update, v_t, the quantities named in the update, the derived
    block). None for other cells (a peephole gate reads c_{t−1}; CIFG's 1 − i_t is no one quantity)."""
    if "c" not in cell.states:
        return None
    step = cell.recorded
    c_prev, update = step.prev["c"], step.definitions.get(step.new["c"])
    cc = cell.jacobian()["c", "c"]
    if update is None or not isinstance(cc, Diag) or not isinstance(cc.vector, sp.MatrixSymbol):
        return None
    v = cc.vector
    terms = update.args if isinstance(update, sp.MatAdd) else (update,)
    carried = [a for a in terms if isinstance(a, sp.HadamardProduct) and set(a.args) == {v, c_prev}]
    if len(carried) != 1:
        return None
    rest = [a for a in terms if a is not carried[0]]
    if any(c_prev in step.expanded(q).free_symbols if q in step.definitions else q == c_prev
           for term in [v, *rest] for q in term.free_symbols if isinstance(q, sp.MatrixSymbol)):
        return None
    named = [q for q in update.free_symbols if isinstance(q, sp.MatrixSymbol) and q in step.definitions]
    named = sorted(named, key=list(step.definitions).index)
    quantities = ", ".join(f"${latex(q)}$" for q in named)
    return cell.name, f"{latex(step.new['c'])} = {latex(update)}", latex(v), quantities, latex(cc)


def teach(doc: Doc, cells: list[Cell]) -> None:
    """The worked example (a level-3 subsection, after the cells' own derivations)."""
    doc.heading(3, "Worked example: one block, step by step")
    tanh_rnn = get_cell("tanh-rnn")
    block = latex(tanh_rnn.jacobian()["h", "h"])
    doc.para("Take the tanh RNN, $h_t = \\tanh(a_t)$ with $a_t = W h_{t-1} + U x_t + b$, and write one "
             "entry at a time. Entry $i$ of the state is")
    doc.display([Row("h_{t,i}", ("\\tanh(a_{t,i}),\\qquad a_{t,i} = \\sum_{j} W_{ij}\\, h_{t-1,j} "
                                 "+ \\sum_{l} U_{il}\\, x_{t,l} + b_i",))])
    doc.para("Only the first sum of $a_{t,i}$ contains $h_{t-1}$, and of it only the term with index $j$ "
             "contains $h_{t-1,j}$, so $\\partial a_{t,i}/\\partial h_{t-1,j} = W_{ij}$. The chain rule for "
             "the scalar $\\tanh$, with $\\tanh'(a) = 1 - \\tanh^2(a)$, gives every entry of the Jacobian:")
    doc.display([Row("\\frac{\\partial h_{t,i}}{\\partial h_{t-1,j}}",
                     ("\\tanh'(a_{t,i})\\, \\frac{\\partial a_{t,i}}{\\partial h_{t-1,j}} "
                      "= \\left(1 - h_{t,i}^2\\right) W_{ij}",))])
    ok = _elementwise_check()
    doc.para("Row $i$ is row $i$ of $W$ multiplied by the number $1 - h_{t,i}^2$, and multiplying row $i$ of "
             "a matrix by $v_i$ is multiplying it by $\\operatorname{diag}(v)$ on the left. So in matrix form, "
             "as gradflow derives it from the recurrence"
             + (" (and as SymPy confirms entry by entry at $n = 2$)" if ok else
                " (WARNING: SymPy's entry-by-entry check at $n = 2$ disagrees: please report this)") + ":")
    doc.display([Row("\\frac{\\partial h_{t}}{\\partial h_{t-1}}", (block,))])

    example = next((e for e in map(_cell_state_example, cells) if e is not None), None)
    if example is not None:
        name, update, v, quantities, cc = example
        v_i = v[: -len("_{t}")] + "_{t,i}" if v.endswith("_{t}") else f"\\left({v}\\right)_i"
        doc.para(f"The same steps for the cell state of `{name}`, ${update}$: none of {quantities} "
                 "depends on $c_{t-1}$, so, holding the cell's other states fixed (the $c \\to c$ "
                 f"block), only the term ${v} \\odot c_{{t-1}}$ depends on $c_{{t-1}}$, and entry $i$ of "
                 "it only through entry $i$ of $c_{t-1}$:")
        doc.display([Row("\\frac{\\partial c_{t,i}}{\\partial c_{t-1,j}}", (f"{v_i}\\, \\delta_{{ij}}",)),
                     Row("\\frac{\\partial c_{t}}{\\partial c_{t-1}}", (cc,))])
        doc.para("($\\delta_{ij}$ is 1 for $i = j$ and 0 otherwise.) The paths through $h_{t-1}$ are the "
                 "other blocks of the Jacobian; [#sec:evidence] measures what they add.")

    doc.para("One unit makes the mechanism visible [@bengio1994learning; pascanu2013difficulty]. With "
             "$n = 1$, $h_t = \\tanh(w\\, h_{t-1} + u\\, x_t + b)$ and the block above is the number "
             "$w\\,(1 - h_t^2)$, so")
    doc.display([Row("\\frac{\\partial h_T}{\\partial h_k}",
                     ("\\prod_{j=k+1}^{T} w \\left(1 - h_j^2\\right),\\qquad "
                      "\\left|\\frac{\\partial h_T}{\\partial h_k}\\right| \\le |w|^{T-k}",))])
    doc.para("since $0 < 1 - h_j^2 \\le 1$. Hence $|w| < 1$ makes the gradient vanish geometrically. "
             "$|w| > 1$ is necessary for growth but not sufficient: the factor is "
             "$|w|(1 - h_j^2)$, and a large $w$ drives $h$ towards $\\pm 1$, where $1 - h^2$ is small. "
             f"Measured on one unit with $u = b = 0$ (zero input) over $T = {WALK_STEPS}$ steps:")
    rows = []
    for w, h0 in WALK:
        r = walk_through(w, h0)
        rows.append([f"${w:g}$", f"${h0:g}$", fmt_num(r["h_T"]), fmt_num(r["factor"]),
                     fmt_num(np.log10(abs(r["factor"])) if r["factor"] else None), fmt_num(r["rate"])])
    doc.table(["$w$", "$h_0$", "$h_T$", "$w(1 - h_T^2)$", "$\\log_{10}\\lvert w(1 - h_T^2)\\rvert$",
               "measured rate"], rows,
              "The one-unit tanh RNN: the state it settles in, the one-step factor there, and the "
              "measured decay rate of $\\partial h_T/\\partial h_k$ ($\\log_{10}$ per step; least-squares "
              "slope over all lags, so the first steps, before $h$ settles, pull it slightly). With "
              "$h_0 = 0$ the state stays at the unstable fixed point 0 and the factor is $w$ itself: "
              "growth; from any other start a $w > 1$ saturates the unit and the gradient vanishes.",
              "rrrrrr")
