"""The derivation section of a report, cell by cell: every formula printed from the symbolic core.

Only the connecting prose is written here; claims that depend on the algebra (no W in the
carousel, an identity block, a finite bound) are checked on the symbolic objects before they
are stated.
"""

from __future__ import annotations

import sympy as sp
from sympy import BlockMatrix, Identity, MatMul, MatrixSymbol, ZeroMatrix, block_collapse

from .._symbolic.cell import Cell
from .._symbolic.cell import n as _n
from .._symbolic.cell import t as _t
from .._symbolic.many_steps import carousel, pascanu_bound, state_product, truncated_jacobian
from .._symbolic.many_steps import j as _j
from .._symbolic.nodes import Diag, Elementwise
from .._symbolic.printing import latex
from .._symbolic.ssm_cells import REFERENCE_MODULES
from .bound_words import identity_summand
from .document import Doc, Row, bmatrix, display_row, visible_width
from .paths import gradient_path


def _relation_row(tex: str, rel: str) -> Row:
    """A display row from ``lhs rel rhs`` exactly as the symbolic core printed it."""
    lhs, _, rhs = tex.partition(f" {rel} ")
    return Row(lhs, (rhs,), rel)


def _weight_names(expr) -> list[str]:
    """Names of the weight matrices W... that occur in ``expr``."""
    return sorted({a.name for a in expr.atoms(MatrixSymbol) if a.name == "W" or a.name.startswith("W_")})


def _has_activation(expr) -> bool:
    return any(isinstance(a, Elementwise) for a in sp.preorder_traversal(expr))


def _elman_form(cell: Cell):
    """(activation, pre-activation, diagonal vector) when ∂h_t/∂h_{t−1} = diag(φ'(a_t))·W, else None."""
    if cell.states != ("h",):
        return None
    st = cell.recorded
    h_def = st.definitions.get(st.new["h"])
    block = cell.jacobian()["h", "h"]
    if not isinstance(h_def, Elementwise) or not isinstance(block, MatMul) or len(block.args) != 2:
        return None
    D, W = block.args
    if not isinstance(D, Diag) or not isinstance(W, MatrixSymbol):
        return None
    return h_def.activation, h_def.arg, D.vector


def _block_names_matrix(cell: Cell, time, zero=()) -> str:
    J = cell.jacobian(time)
    return bmatrix([["0" if (a, b) in zero else J.block_name((a, b)) for b in cell.states]
                     for a in cell.states])


def derive_cell(doc: Doc, cell: Cell) -> None:
    """One cell's subsection: recurrence, one-step Jacobian, product over time, bound, carousel."""
    st = cell.recorded
    J = cell.jacobian()
    # the residual recurrence is not from its reference (a feed-forward paper): cited below for what it is
    ref = f" [@{cell.reference}]" if cell.reference and cell.name != "residual-rnn" else ""
    doc.heading(3, f"{cell.title} (`{cell.name}`)")

    # the recurrence ----------------------------------------------------------------------------
    doc.para("One time step of the cell, with its named intermediate quantities in the order they "
             f"are computed{ref}:")
    doc.display([display_row(latex(s), e) for s, e in st.definitions.items()])
    if cell.name == "gru":
        doc.para("This is the GRU as PyTorch (`torch.nn.GRU`) and Keras (`reset_after=True`) compute it. "
                 "It differs from the GRU of @[cho2014gru] in where the reset gate acts: here it "
                 "multiplies the recurrent product, $r_t \\odot (W_n h_{t-1} + b_{hn})$, while Cho et al. "
                 "reset the state before the product, $W_n (r_t \\odot h_{t-1})$ (gradflow's `gru-cho`). "
                 "The two have different Jacobians and are not interchangeable.")
    elif cell.name == "residual-rnn":
        doc.para("@[he2016residual] introduced the identity skip connection in feed-forward networks "
                 "(across layers, not time steps); this recurrence carries the same form over to time, "
                 "$h_t = h_{t-1} + \\tanh(a_t)$. It is a construction for comparison here, not a cell "
                 "from that paper.")

    # the one-step Jacobian -------------------------------------------------------------------
    if len(cell.states) == 1:
        doc.para(f"The state is $s_t = {latex(st.new['h'])}$. Differentiating the step through the named "
                 "quantities with gradflow's matrix chain rule gives the one-step Jacobian, in numerator "
                 "layout (row $i$ holds the derivatives of the $i$-th entry of the new state; an "
                 "$n \\times n$ matrix):")
    elif cell.sizes:  # states of other sizes than n (mLSTM's vec C, n²)
        names = ", ".join(latex(st.new[s]) for s in cell.states)
        sizes = ", ".join(f"${latex(st.new[s])}$: ${sp.latex(cell.size(s))}$" for s in cell.states)
        doc.para(f"The state is $s_t = ({names})$, its parts of sizes {sizes}, so the one-step Jacobian "
                 f"$\\partial s_t/\\partial s_{{t-1}}$ has {len(cell.states) ** 2} blocks, the block of a "
                 "numerator of size $a$ and a denominator of size $b$ being $a \\times b$ in numerator "
                 "layout (row $i$ of a block holds the derivatives of the $i$-th entry of its numerator). "
                 "Differentiating the step through the named quantities with gradflow's matrix chain "
                 "rule gives:")
    else:
        names = ", ".join(latex(st.new[s]) for s in cell.states)
        kind = {2: "pair", 3: "triple"}.get(len(cell.states), f"{len(cell.states)}-tuple")
        doc.para(f"The state is the {kind} $s_t = ({names})$, so the one-step Jacobian "
                 f"$\\partial s_t/\\partial s_{{t-1}}$ has {len(cell.states) ** 2} blocks, each "
                 "$n \\times n$ in numerator layout (row $i$ of a block holds the derivatives of the "
                 "$i$-th entry of its numerator). Differentiating the step through the named "
                 "quantities with gradflow's matrix chain rule gives:")
    jac = f"eq:{cell.name}-jacobian"
    doc.display([display_row(J.block_name(key), v) for key, v in J.blocks.items()], label=jac)
    elman = _elman_form(cell)
    if elman is not None:
        act, arg, vec = elman
        doc.para("The diagonal factor is the derivative of the activation at the pre-activation, "
                 "entry by entry, written through the quantities of the step:")
        doc.display([display_row(act.latex + "'\\left(" + latex(arg) + "\\right)", vec)])

    # the product over time -------------------------------------------------------------------
    prod = state_product(cell)
    lhs, _, full_rhs = prod.latex().partition(" = ")
    body = prod.expr.args[0]
    doc.para("Over $t-k$ steps the chain rule multiplies one-step Jacobians, the latest on the left "
             "[@hochreiter1991untersuchungen; bengio1994learning]:")
    if len(cell.states) == 1 and visible_width(latex(body)) <= 48:
        doc.display([Row(lhs, (full_rhs,))])
    else:
        Jj = MatrixSymbol(f"J_{{{sp.latex(_j)}}}", *body.shape)
        compact = prod.expr.func(Jj, *prod.expr.args[1:])
        doc.display([Row(lhs, (latex(compact),))])
        if len(cell.states) == 1:
            doc.para(f"where $J_j$ is the one-step Jacobian [#{jac}] at step $j$ (every $t$ replaced by $j$).")
        else:
            doc.para("where $J_j$ is the one-step Jacobian at step $j$, assembled from the blocks "
                     f"[#{jac}] "
                     "with every $t$ replaced by $j$, the state ordered as "
                     f"$({', '.join(cell.states)})$:")
            doc.display([Row(f"J_{{{sp.latex(_j)}}}", (_block_names_matrix(cell, _j),))])
    # the bound -----------------------------------------------------------------------------------
    try:
        bound = pascanu_bound(cell)
    except ValueError:
        bound = None
    bounded = bound is not None or cell.name in ("gru", "gru-cho")
    doc.para("Whether the product shrinks or grows geometrically in $t-k$ depends on the sizes of "
             "its factors; " + ("the next paragraph bounds them and " if bounded else "")
             + "[#sec:evidence] measures them.")
    if bound is not None and elman is not None and bound.gamma is not None:
        act = elman[0]
        g = bound.gamma
        doc.para("Since $\\lVert \\operatorname{diag}(v) \\rVert_2 = \\max_i |v_i|$ and the spectral norm "
                 "is submultiplicative, every factor has norm at most $\\gamma\\,\\sigma_{\\max}(W)$ with "
                 f"$\\gamma = \\sup|\\varphi'| = {sp.latex(g)}$ for $\\varphi = {act.latex}$. This is the bound "
                 "of @[pascanu2013difficulty]:")
        doc.display([_relation_row(bound.latex(), "\\le")], label=f"eq:{cell.name}-bound")
        doc.para(f"Hence $\\sigma_{{\\max}}(W) < 1/\\gamma = {sp.latex(1 / g)}$ is sufficient for the "
                 "gradient to vanish geometrically in $t-k$. It is not necessary, and "
                 f"$\\sigma_{{\\max}}(W) > {sp.latex(1 / g)}$ does not by itself imply that gradients "
                 "explode.")
    elif bound is not None:
        single_diag = len(bound.terms) == 1 and isinstance(bound.terms[0][1], Identity)
        single_term = len(bound.terms) == 1 and not single_diag
        if single_diag:  # J = diag(v): its norm is max_i |v_i|
            doc.para("The one-step Jacobian is a single diagonal matrix $\\operatorname{diag}(v)$, whose "
                     "spectral norm is $\\max_i |v_i| \\le \\sup|v|$, so")
        elif single_term:  # J = diag(v)·M (IndRNN: M = diag(u); expRNN: M = exp(A − Aᵀ))
            _single_term_bound(doc, bound)
        if not single_diag and not single_term:
            doc.para("The one-step Jacobian is a sum of terms $\\operatorname{diag}(v)\\,M$. Bounding each "
                     "by $\\sup|v|\\,\\sigma_{\\max}(M)$ (the triangle inequality; an extension of the "
                     "argument of @[pascanu2013difficulty], not their bound) gives")
        doc.display([_relation_row(bound.latex(), "\\le")], label=f"eq:{cell.name}-bound")
        if single_diag and bound.rate == 1:
            doc.para("No factor can make the gradient grow; but since $\\sup|v| = 1$ this bound cannot show "
                     "that it vanishes: how fast it does depends on how close the entries of $v$ come to 1, "
                     "which [#sec:evidence] measures.")
        if identity_summand(cell):
            doc.para("Its rate is at least 1 whatever $W$ is, so this bound cannot show that gradients "
                     "vanish: the identity term passes the gradient from one step to the previous one "
                     "unchanged, the mechanism of residual connections. The price is that the state "
                     "itself is a running sum and can drift ([#sec:evidence] measures $|h_t|$).")
    elif cell.name in ("gru", "gru-cho"):
        _gru_bound(doc, cell)
    elif (cell.name in REFERENCE_MODULES or gradient_path(cell).kind in ("diagonal", "rotation")) \
            and gradient_path(cell).reads != "state":  # S6, S4D, RG-LRU; LRU, minLSTM: no W, no state
        reads = gradient_path(cell).reads
        doc.para("The one-step Jacobian holds no recurrent weight matrix, so there is no bound of the "
                 "form of @[pascanu2013difficulty]; its factors, read off it in the section on the path "
                 "that carries the gradient, "
                 + ("depend on the input $x_t$ and the parameters, never on the previous state."
                    if reads == "input" else "depend on the parameters only: the same at every step."))
    elif len(cell.states) == 1:
        # the diagonal factors as derived (IndRNN's is step(a_t) ⊙ u: a weight, not the state)
        diags = sorted({latex(d.vector) for d in sp.preorder_traversal(J["h", "h"]) if isinstance(d, Diag)})
        doc.para("gradflow derives no supremum for the diagonal factor "
                 + " and ".join(f"$\\operatorname{{diag}}({v})$" for v in diags)
                 + " from the recurrence alone (it holds a state or a weight whose size the recurrence "
                 "leaves open, or parts that gradflow does not bound one at a time), so it gives no bound "
                 "of the form of @[pascanu2013difficulty] from the one-step Jacobian alone; bounds on "
                 "the weights or on the initial state can give one. The measurements in [#sec:evidence] "
                 "take its place.")
    else:
        words = {2: "two", 3: "three", 4: "four"}
        count = words.get(len(cell.states), str(len(cell.states)))
        doc.para("The bound of @[pascanu2013difficulty] is a statement about a single state; for this "
                 f"{count}-state cell "
                 + ("the decisive path is the cell state, below." if "c" in cell.states else
                    "the path that carries the gradient is read off the Jacobian in the section on "
                    "that path, and [#sec:evidence] measures it."))

    if "c" in cell.states:
        _derive_carousel(doc, cell)


def _single_term_bound(doc: Doc, bound) -> None:
    """One term diag(v)·M: ‖J_t‖₂ ≤ sup|v| · σ_max(M), each factor read off the derived bound."""
    from .._symbolic.many_steps import sigma_max

    sup, M = bound.terms[0]
    exact = sigma_max(M)
    block = bound.cell.jacobian()["h", "h"]
    words = (f"The one-step Jacobian ${latex(block)}$ is one term $\\operatorname{{diag}}(v)\\,{latex(M)}$. "
             "Since $\\lVert \\operatorname{diag}(v) \\rVert_2 = \\max_i |v_i|$ and the spectral norm is "
             "submultiplicative, it has norm at most "
             f"$\\sup|v| \\cdot \\sigma_{{\\max}}({latex(M)})$, with $\\sup|v| = {sp.latex(sup)}$ over every "
             "value the quantities in $v$ can take")
    if isinstance(M, Diag):
        words += (f", and $\\sigma_{{\\max}}({latex(M)}) = {latex(exact)}$: the element-wise recurrent "
                  "weight is a matrix of the bound, not a quantity to take the supremum of")
    elif exact.is_Number:
        words += (f", and $\\sigma_{{\\max}}({latex(M)}) = {sp.latex(exact)}$: the exponent is skew-symmetric "
                  "($S^\\top = -S$), so $\\exp(S)^\\top \\exp(S) = \\exp(-S)\\exp(S) = I$ and the matrix is "
                  "orthogonal")
    doc.para(words + ". Over $t-k$ steps:")


def _gru_bound(doc: Doc, cell: Cell) -> None:
    """The GRU's finite one-step bound (valid while |h| < 1); see :mod:`gradflow._numeric.gru_bound`."""
    pytorch = cell.name == "gru"
    doc.para("Some diagonal factors of this Jacobian contain the previous state $h_{t-1}$ and the "
             "candidate $\\tilde{h}_t$, so the one-step recurrence alone does not bound them. The "
             "trajectory does: $h_t$ is a convex combination of $h_{t-1}$ and $\\tilde{h}_t \\in (-1, 1)$, "
             "so a start with $|h_0| < 1$ (entry-wise; gradflow starts at 0) keeps every state in "
             "$(-1, 1)$. Then $|h_{t-1} - \\tilde{h}_t| < 2$, $z(1-z) \\le 1/4$, $r(1-r) \\le 1/4$, "
             "$(1-z)(1-\\tilde{h}^2) \\le 1$, $r < 1$"
             + (", and $|W_n h_{t-1} + b_{hn}|_i \\le \\rho_i = \\sum_j |(W_n)_{ij}| + |(b_{hn})_i|$"
                if pytorch else "")
             + ", and the triangle inequality bounds every factor:")
    if pytorch:
        rhs = ("1 + \\tfrac{1}{2}\\sigma_{\\max}(W_z) + \\sigma_{\\max}(W_n) "
               "+ \\tfrac{1}{4}\\max_i \\rho_i\\,\\sigma_{\\max}(W_r)")
    else:
        rhs = ("1 + \\tfrac{1}{2}\\sigma_{\\max}(W_z) "
               "+ \\sigma_{\\max}(W_n)\\left(1 + \\tfrac{1}{4}\\sigma_{\\max}(W_r)\\right)")
    doc.display([Row("\\left\\lVert \\frac{\\partial h_{t}}{\\partial h_{t-1}} \\right\\rVert_2", (rhs,), "\\le")])
    doc.para("A finite bound exists, but it is at least 1 (its first term bounds $\\operatorname{diag}(z_t)$), so it "
             "limits how fast gradients can grow and cannot show that they vanish; the measurements in "
             "[#sec:evidence] show what they do.")


def carousel_kind(cell: Cell) -> tuple[str, object]:
    """What the cell's carousel factor diag(v) is, as the derivation words it: ``("identity", None)``,
    ``("forget", f_t)`` (its own forget gate: no W, no φ'), ``("factor", v)`` (no W, v another factor:
    CIFG's 1 − i_t, a peephole's f_t(1 + c_{t−1}(1 − f_t)w_f) + …, which holds σ' and can exceed 1)
    or ``("other", v)`` (it holds recurrent weights or activation derivatives)."""
    car = carousel(cell)
    if car.constant:
        return "identity", None
    block = cell.jacobian()["c", "c"]
    v = block.vector if isinstance(block, Diag) else None
    own_gate = cell.has_forget_gate and getattr(v, "name", None) == "f_{t}"
    no_w, no_phi = not _weight_names(car.expr), not _has_activation(car.expr)
    if no_w and no_phi and own_gate:
        return "forget", v
    if no_w and no_phi and v is not None:
        return "factor", v
    return "other", v


def _derive_carousel(doc: Doc, cell: Cell) -> None:
    J = cell.jacobian()
    car = carousel(cell)
    v = J["c", "c"].vector if isinstance(J["c", "c"], Diag) else None
    own_gate = cell.has_forget_gate and getattr(v, "name", None) == "f_{t}"  # diag(f_t) itself
    what = ("the constant error carousel" if car.constant else
            "the carousel of its forget gates" if own_gate else "its diagonal carousel")
    doc.heading(4, f"The cell state of `{cell.name}`: {what}")
    doc.para(f"The cell-state block of the one-step Jacobian [#eq:{cell.name}-jacobian] is")
    doc.display([display_row(J.block_name(("c", "c")), J["c", "c"])])
    no_w, no_phi = not _weight_names(car.expr), not _has_activation(car.expr)
    if car.constant:
        doc.para("the identity, so along the cell state alone (the path "
                 "$c_k \\to c_{k+1} \\to \\dots \\to c_t$, gates held fixed) the product over any lag "
                 "$t-k$ is the identity too:")
        doc.display([_relation_row(car.latex(), "=")])
        doc.para("This is the constant error carousel of @[hochreiter1997lstm]: error flowing back along "
                 "the cell state is neither multiplied by a weight matrix nor damped by an activation "
                 "derivative, however long the lag.")
    else:
        doc.para("Along the cell state alone (the path $c_k \\to c_{k+1} \\to \\dots \\to c_t$, never "
                 "through $h$) the product of these blocks is a product of diagonal matrices, hence diagonal:")
        doc.display([_relation_row(car.latex(), "=")], label=f"eq:{cell.name}-carousel")
        if no_w and no_phi and not own_gate and v is not None:  # CIFG's 1 − i_t, a peephole's factor
            doc.para("It contains no recurrent weight matrix: each unit's gradient is multiplied at every "
                     f"step by its own entry of ${latex(v)}$, and decays as far as those entries fall "
                     "below 1 in magnitude. With all of them equal to 1 the product is the identity: "
                     "the constant error carousel of @[hochreiter1997lstm].")
        elif no_w and no_phi:
            doc.para("It contains no recurrent weight matrix and no activation derivative $\\varphi'$: each "
                     "unit's gradient is multiplied by its own forget gate at every step, and decays only "
                     "as far as its forget gates fall below 1. The network controls this decay through "
                     "the forget gate introduced by @[gers2000forget]; initialising the forget-gate bias "
                     "at 1 [@jozefowicz2015empirical] moves the initial forget gates towards 1 and slows "
                     "the decay at the start of training. With all forget gates equal to 1 the product "
                     "is the identity: the constant error carousel of @[hochreiter1997lstm].")
        else:
            present = ", ".join(f"${w}$" for w in _weight_names(car.expr)) or "activation derivatives"
            doc.para(f"Unlike the 1997 carousel, this path contains {present}.")

    # the 1997 truncated gradient versus the full one ---------------------------------------------
    T = truncated_jacobian(cell)
    zero = {key for key, v in T.blocks.items() if isinstance(v, ZeroMatrix)}
    # the blocks truncation removes (sLSTM's ∂n_t/∂c_{t−1} and ∂c_t/∂n_{t−1} are 0 already)
    cut = [f"${J.block_name(key)}$" for key in J.blocks if key in zero and not isinstance(J.blocks[key], ZeroMatrix)]
    cut_words = ("the block " + cut[0] if len(cut) == 1 else
                 "the blocks " + ", ".join(cut[:-1]) + " and " + cut[-1])
    doc.heading(4, f"The 1997 truncated gradient versus the full gradient (`{cell.name}`)")
    doc.para("@[hochreiter1997lstm] trained the LSTM with a truncated gradient: error that reaches the "
             "gates and the cell input through the recurrent connections $h_{t-1}$ is not propagated "
             "further back. In the one-step Jacobian this sets " + cut_words + " to zero. With the state ordered as "
             f"$({', '.join(cell.states)})$, the full and the truncated one-step Jacobians are")
    doc.display([Row("J_{t}", (_block_names_matrix(cell, _t),)),
                 Row("\\tilde{J}_{t}", (_block_names_matrix(cell, _t, zero),))])
    doc.para("with the blocks that remain in the truncated Jacobian")
    doc.display([display_row(T.block_name(key), v) for key, v in T.blocks.items() if key not in zero])

    def placeholder(time):
        Jt = cell.jacobian(time)
        return BlockMatrix([[ZeroMatrix(_n, _n) if (a, b) in zero
                             else MatrixSymbol(Jt.block_name((a, b)), _n, _n)
                             for b in cell.states] for a in cell.states])

    two = block_collapse(placeholder(_t) * placeholder(_t - 1))
    S = len(cell.states)
    doc.para("Two truncated steps multiply to")
    doc.display([Row("\\tilde{J}_{t}\\,\\tilde{J}_{t-1}",
                      (bmatrix([[latex(two.blocks[a, b]) for b in range(S)] for a in range(S)]),))])
    w_cut = sorted({w for key in zero for w in _weight_names(J.blocks[key])})
    doc.para("The first block column stays zero, so the $c \\to c$ block of any product of truncated "
             "Jacobians is the product of the $c \\to c$ blocks alone: under truncation the gradient "
             "along the cell state is exactly the carousel above. The full gradient keeps the blocks "
             "with respect to $h_{t-1}$; they contain the recurrent weights "
             + ", ".join(f"${w}$" for w in w_cut)
             + " and activation derivatives, and they add paths that leave the cell state and return "
             "to it. [#sec:evidence] separates the two numerically.")
