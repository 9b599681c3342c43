"""The report section "Which path carries the gradient": one path per cell, read off its derived Jacobian.

For each cell the path is found on the symbolic one-step Jacobian (never named by hand):

* ``diagonal``: ∂h_t/∂h_{t−1} is itself diag(v_t) (S6, RG-LRU, minGRU, minLSTM, IndRNN): the
  whole gradient travels unit by unit, ∂s_T/∂s_k = diag(∏ v_s);
* ``rotation``: 2 × 2 rotation–scaling blocks (LRU, S4D), ∂ = [[v, −w], [w, v]] per mode: the
  product's norm is ∏ |λ_s| with |λ| = √(v² + w²);
* ``carousel``: a cell state c whose block ∂c_t/∂c_{t−1} is diag(v_t) or I (LSTM, sLSTM, CIFG …);
* ``memory``: mLSTM's matrix memory and normaliser (C, n), whose blocks ∂C_t/∂C_{t−1} and
  ∂n_t/∂n_{t−1} are the same scalar times I (f_t I) while h_{t−1} feeds nothing back;
* ``direct``: the one term diag(v_t) of ∂h_t/∂h_{t−1} that holds no recurrent matrix W (GRU: z_t);
* ``none``: every term passes through W (Elman RNNs);
* ``other``: no single W-free diagonal term can be isolated (coRNN, AntisymmetricRNN).

Whether v_t reads s_{t−1}, only x_t, or neither is decided on v's expansion in the step's
definitions. The numbers beside each sentence are the path's own product, max_j Σ_t log10|v_{t,j}|,
evaluated from the compiled path expression on the report's run, and the measured
log10 ‖∂s_T/∂s_0‖₂ of the run; "the same number" is written only when they agree to 1e-9.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sympy import Identity, MatAdd, MatMul, OneMatrix, ZeroMatrix

from .._checks import GradflowError
from .._numeric.compile import compile_expr
from .._numeric.flow import random_inputs
from .._symbolic.cell import Cell
from .._symbolic.nodes import Diag
from .._symbolic.printing import latex
from .document import Doc, fmt_num, visible_width
from .evidence import Measurement

#: relative agreement below which two log10 norms are called the same number
SAME = 1e-9
#: a path's factor wider than this (visible characters) is named by its equation, not printed inline:
#: an inline formula cannot break inside \left( … \right) (the peephole LSTM's ran 60 pt off the page)
INLINE_WIDTH = 40.0


@dataclass(frozen=True)
class GradientPath:
    """The path that carries a cell's gradient, as read off the derived Jacobian.

    Attributes:
        cell: the cell.
        kind: ``"diagonal"``, ``"rotation"``, ``"carousel"``, ``"direct"``, ``"none"`` (every term
            holds W) or ``"other"`` (several W-free terms, no single diagonal path).
        state: the state the path runs along (``"h"`` or ``"c"``).
        vector: v with the path's one-step factor diag(v) (rotation: the cosine part); None for none.
        other: the rotation's sine part w (blocks [[v, −w], [w, v]]), else None.
        reads: ``"state"`` (v reads s_{t−1}), ``"input"`` (x_t only) or ``"constant"`` (neither).
    """

    cell: Cell
    kind: str
    state: str
    vector: object = None
    other: object = None
    reads: str = "constant"

    def factor_latex(self) -> str:
        """LaTeX of the one-step factor: diag(v), the block modulus, or I."""
        if self.vector is None:
            return ""
        if isinstance(self.vector, OneMatrix):
            return "I"
        if self.kind == "rotation":
            return r"\sqrt{(%s)^{\odot 2} + (%s)^{\odot 2}}" % (latex(self.vector), latex(self.other))
        out = r"\operatorname{diag}\left(%s\right)" % latex(self.vector)
        defs = self.cell.recorded.definitions
        if self.vector in defs:  # a named quantity: print what it is
            out += r",\ %s = %s" % (latex(self.vector), latex(defs[self.vector]))
        return out


def _reads(cell: Cell, exprs) -> str:
    step = cell.recorded
    defs = step.definitions
    prev, used = set(step.prev.values()), set()
    for e in exprs:
        for name in reversed(list(defs)):
            e = e.xreplace({name: defs[name]})
        used |= e.free_symbols
    if used & prev:
        return "state"
    return "input" if step.x in used else "constant"


def _scalar(v):
    """s for a vector 1 s (a 1 × 1 quantity spread over the rows), else None."""
    if isinstance(v, MatMul) and len(v.args) == 2 and isinstance(v.args[0], OneMatrix) and v.args[1].shape == (1, 1):
        return v.args[1]
    return None


def gradient_path(cell: Cell) -> GradientPath:
    """The path of ``cell``'s gradient, found on its derived one-step Jacobian (see the module docstring)."""
    J = cell.jacobian()
    recurrent = {p.symbol for p in cell.recorded.params if p.kind == "W"}
    if cell.states == ("h",) and isinstance(J[("h", "h")], Diag):
        v = J[("h", "h")].vector
        return GradientPath(cell, "diagonal", "h", v, reads=_reads(cell, [v]))
    if cell.states == ("h", "q") and all(isinstance(J[k], Diag) for k in (("h", "h"), ("q", "h"), ("q", "q"))):
        v, w = J[("h", "h")].vector, J[("q", "h")].vector
        hq = J[("h", "q")]
        minus_w = isinstance(hq, MatMul) and len(hq.args) == 2 and hq.args[0] == -1 and hq.args[1] == J[("q", "h")]
        if J[("q", "q")] == J[("h", "h")] and minus_w:
            return GradientPath(cell, "rotation", "h", v, w, _reads(cell, [v, w]))
    if {"C", "n"} <= set(cell.states) and all(isinstance(J[(a, "h")], ZeroMatrix) for a in cell.states):
        C, nn = J[("C", "C")], J[("n", "n")]
        if isinstance(C, Diag) and isinstance(nn, Diag) and _scalar(C.vector) == _scalar(nn.vector) is not None:
            return GradientPath(cell, "memory", "C", nn.vector, reads=_reads(cell, [nn.vector]))
    if "c" in cell.states:
        block = J[("c", "c")]
        if isinstance(block, Identity):
            return GradientPath(cell, "carousel", "c", OneMatrix(block.shape[0], 1), reads="constant")
        if isinstance(block, Diag):
            return GradientPath(cell, "carousel", "c", block.vector, reads=_reads(cell, [block.vector]))
    block = J[("h", "h")]
    terms = block.args if isinstance(block, MatAdd) else (block,)
    free = [a for a in terms if not (a.free_symbols & recurrent)]
    if not free:
        return GradientPath(cell, "none", "h")
    others = [a for a in terms if a is not free[0]]
    if len(free) == 1 and isinstance(free[0], (Diag, Identity)) and not any(a.has(Identity) for a in others):
        v = OneMatrix(block.shape[0], 1) if isinstance(free[0], Identity) else free[0].vector
        return GradientPath(cell, "direct", "h", v, reads=_reads(cell, [v]))
    return GradientPath(cell, "other", "h")


def path_log10(path: GradientPath, run: Measurement, steps: int, input: int | None, seed: int) -> float:
    """max_j Σ_t log10|v_{t,j}| over the run (for a rotation, |λ| = √(v² + w²)): the path's product.
    The run's inputs are redrawn from ``seed`` at the run's own m (``input`` must agree if given)."""
    net = run.net
    if input is not None and int(input) != int(net.input):
        raise GradflowError(f"input size {input} is not the run's ({net.input})")
    inputs = random_inputs(steps, int(net.input), seed=seed)
    traj = net.unroll(inputs)
    fv = compile_expr(path.vector)
    fw = None if path.other is None else compile_expr(path.other)
    total = np.zeros(net.hidden)
    for t in range(steps):
        _, env = net.step(traj.states[t], inputs[t])
        v = np.broadcast_to(np.asarray(fv(env), dtype=float), (1, net.hidden))[0]
        if fw is not None:
            w = np.broadcast_to(np.asarray(fw(env), dtype=float), (1, net.hidden))[0]
            v = np.hypot(v, w)
        with np.errstate(divide="ignore"):
            total = total + np.log10(np.abs(v))
    return float(np.max(total))


def _same(a: float, b: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= SAME * max(1.0, abs(b))


_READS = {"input": "it reads the input $x_t$ only, never $s_{t-1}$, so the input selects how much "
                   "gradient passes at each step",
          "constant": "it holds neither $x_t$ nor $s_{t-1}$: the same factor at every step",
          "state": "it reads $s_{t-1}$, so the path's factor itself moves with the state"}


def _other_words(cell: Cell) -> str:
    """Why an "other" cell has no single path: its W-free terms of ∂h_t/∂h_{t−1} named (the identity
    of a residual step, coRNN's (1 − γΔt²) I), and what else the gradient passes through."""
    block = cell.jacobian()[("h", "h")]
    recurrent = {p.symbol for p in cell.recorded.params if p.kind == "W"}
    terms = block.args if isinstance(block, MatAdd) else (block,)
    free = [a for a in terms if not (a.free_symbols & recurrent)]
    if not free:
        return "every term of $\\partial h_t/\\partial h_{t-1}$ passes through a recurrent matrix;"
    tex = latex(free[0] if len(free) == 1 else MatAdd(*free))
    text = f"of $\\partial h_t/\\partial h_{{t-1}}$ the term ${tex}$ holds no recurrent matrix"
    others = [s for s in cell.states if s != "h"]
    if others:
        return text + (", but the gradient also passes through "
                       + " and ".join(f"${s}$" for s in others) + f" (the state is $({', '.join(cell.states)})$), "
                       "so this term alone is not the path it takes;")
    rest = "the other term, through recurrent matrices, adds" if len(terms) - len(free) == 1 else \
        "the other terms, through recurrent matrices, add"
    return text + f", but {rest} to it at every step, so this term alone is not the path the gradient takes;"


def gradient_path_section(doc: Doc, cells: list[Cell], runs: dict[str, Measurement],
                          input: int | Mapping[str, int], steps: int, seed: int) -> list[dict]:
    """The section: one paragraph per cell; returns the numbers behind the sentences. ``input``: m,
    one for every cell or cell name → m (each cell's run has its own)."""
    doc.heading(2, "Which path carries the gradient")
    doc.para("For each cell, the path below is read off the derived one-step Jacobian of [#sec:derivation]: "
             "the part of $\\partial s_t/\\partial s_{t-1}$ that is a diagonal matrix and holds no "
             "recurrent weight matrix. Beside it, over the run of [#sec:evidence]: the path's own product, "
             "$\\max_j \\sum_t \\log_{10} |v_{t,j}|$ ($\\log_{10}$ of the spectral norm of "
             "$\\prod_t \\operatorname{diag}(v_t)$), and the measured "
             "$\\log_{10}\\lVert\\partial s_T/\\partial s_0\\rVert_2$; "
             "the curves of every cell share one axis in the decay figure.")
    out = []
    for cell in cells:
        path = gradient_path(cell)
        run = runs[cell.name]
        full = float(run.flow.full.mean()["log10_norm_2"][0])
        row = {"cell": cell.name, "kind": path.kind, "reads": path.reads, "measured": full, "path": None}
        name = f"`{cell.name}`"
        if path.kind == "other":
            doc.para(f"{name}: " + _other_words(cell) + " the gradient is carried by the whole "
                     + ("block" if cell.states == ("h",) else "Jacobian")
                     + f" (measured: {fmt_num(full, '{:.2f}')}).")
            out.append(row)
            continue
        if path.kind == "none":
            doc.para(f"{name}: every term of $\\partial h_t/\\partial h_{{t-1}}$ passes through a recurrent "
                     "matrix; no diagonal path bypasses it, so the gradient is carried only by the product "
                     f"of those terms (measured: {fmt_num(full, '{:.2f}')}).")
            out.append(row)
            continue
        value = path_log10(path, run, steps, input[cell.name] if isinstance(input, Mapping) else input, seed)
        row["path"] = value
        factor = path.factor_latex()
        long = visible_width(factor) > INLINE_WIDTH  # too long for a line of text: name its equation
        reads = _READS[path.reads]
        if path.kind == "diagonal":
            text = (f"{name}: the whole one-step Jacobian is diagonal, $J_t = {factor}$, so the gradient "
                    f"travels unit by unit and never mixes across units; {reads}.")
        elif path.kind == "rotation":
            text = (f"{name}: the one-step Jacobian is one $2 \\times 2$ rotation–scaling block per mode; "
                    f"so the spectral norm of the product is the largest, over the modes, of the product over "
                    f"the steps of the moduli ${factor}$; {reads}.")
        elif path.kind == "memory":
            f = latex(_scalar(path.vector))
            text = (f"{name}: $h_t$ is a read-out that feeds nothing back ($\\partial s_t/\\partial h_{{t-1}} = 0$); "
                    f"the memory path $\\partial C_t/\\partial C_{{t-1}} = {f} I$, "
                    f"$\\partial n_t/\\partial n_{{t-1}} = {f} I$ holds no recurrent matrix and is a multiple "
                    f"of the identity, so $\\lVert \\partial (C_T, n_T)/\\partial (C_k, n_k) \\rVert_2$ is "
                    f"exactly the product of the ${f}$; {reads}.")
        elif path.kind == "carousel":
            block = (f"$\\partial c_t/\\partial c_{{t-1}} = {factor}$" if not long else
                     f"$\\partial c_t/\\partial c_{{t-1}}$ of [#eq:{cell.name}-jacobian], a diagonal matrix,")
            text = f"{name}: the cell-state path {block} holds no recurrent matrix; {reads}."
        else:
            term = f"${factor}$" if not long else f"one diagonal term (see [#eq:{cell.name}-jacobian])"
            text = (f"{name}: of the terms of $\\partial h_t/\\partial h_{{t-1}}$ only {term} holds no "
                    f"recurrent matrix; it is the direct path; {reads}.")
        text += f" Path alone: {fmt_num(value, '{:.4f}')}"
        if math.isinf(value):
            text += " (every unit's factor is exactly 0 at some step: along this path no gradient reaches $s_0$)"
        if path.kind == "memory" and run.flow.cell_state is not None:
            mem = float(run.flow.cell_state.mean()["log10_norm_2"][0])
            row["memory"] = mem
            text += ("; the measured memory block $\\partial (C_T, n_T)/\\partial (C_0, n_0)$: "
                     f"{fmt_num(mem, '{:.4f}')}"
                     + (" (the same number)" if _same(value, mem) else
                        ", which differs and contradicts the algebra: please report this"))
        if path.kind == "carousel" and run.flow.carousel is not None:
            car = float(run.flow.carousel.mean()["log10_norm_2"][0])
            row["carousel"] = car
            text += (f"; the measured carousel curve ([#sec:evidence]): {fmt_num(car, '{:.4f}')}"
                     + (" (the same number)" if _same(value, car) else
                        ", which differs and contradicts the algebra: please report this"))
        text += f"; full Jacobian: {fmt_num(full, '{:.4f}')}"
        if path.kind in ("diagonal", "rotation"):
            row["same"] = _same(value, full)
            text += (" (the same number: the path is the whole Jacobian)." if row["same"] else
                     ", which differs and contradicts the algebra: please report this.")
        else:
            text += "."
        doc.para(text)
        out.append(row)
    return out
