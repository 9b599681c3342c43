"""A recurrent cell is its recurrence, written once; everything else is derived from it.

A cell's definition is a function that receives a :class:`Recurrence` builder and returns its
new states. The builder hands out the previous states s_{t−1}, the input x_t and the
parameters (W h_{t−1} + U x_t + b per gate), and names intermediate quantities (gates,
pre-activations). From the recorded definition gradflow derives the Jacobian blocks
∂s_t/∂s_{t−1} (:func:`gradflow._symbolic.chain.total_derivatives`), the parameter list and counts, the
explicit recurrence at concrete n, and the numeric kernels.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import sympy as sp
from sympy import MatAdd, MatMul, MatrixSymbol
from sympy.matrices.expressions.matexpr import MatrixExpr

from .._checks import GradflowError
from .._vocabulary import ParamKind
from .printing import DisplaysLatex, latex, text

#: symbolic hidden size n and input size m
n = sp.Symbol("n", integer=True, positive=True)
m = sp.Symbol("m", integer=True, positive=True)
#: the time step t (names carry it: h_{t-1}, f_t)
t = sp.Symbol("t", integer=True)


#: the TeX commands a quantity's name may hold (Greek letters, accents, log): a name is printed
#: into the report's LaTeX and Markdown as it is, so anything else in it is refused
_NAME_COMMANDS = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi pi "
    "varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi "
    "Pi Sigma Upsilon Phi Psi Omega ell tilde bar hat dot ddot vec breve check log exp".split())
_NAME_REST = re.compile(r"[A-Za-z0-9 _^{}',.+\-]*")


def check_name(name: object, what: str) -> str:
    """``name`` if it is safe to print as a symbol's name in LaTeX and Markdown: letters, digits,
    ``_ ^ { } ' , . + -`` and spaces, balanced braces, and TeX commands only from
    :data:`_NAME_COMMANDS` (``\\alpha``, ``\\tilde{c}``); else ``GradflowError``."""
    if not isinstance(name, str) or not name.strip():
        raise GradflowError(f"{what} must be a non-empty string, got {name!r}")
    bad = [c for c in re.findall(r"\\([A-Za-z]+)", name) if c not in _NAME_COMMANDS]
    rest = re.sub(r"\\[A-Za-z]+", "", name)
    depth = 0
    for ch in rest:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            break
    if bad or "\\" in rest or not _NAME_REST.fullmatch(rest) or depth != 0:
        why = (f"the TeX command \\{bad[0]}" if bad else "unbalanced braces" if depth
               else "a character TeX or Markdown would read as markup")
        raise GradflowError(f"{what} {name!r} holds {why}; a name may hold letters, digits, _ ^ {{ }} ' , . + - "
                            "and Greek letters or accents (\\alpha, \\tilde{c}): it is printed into the report")
    return name


def timed(base: str, time) -> str:
    """The printed name of quantity ``base`` at ``time``: h_{t - 1}, f_{t}."""
    return "%s_{%s}" % (base, sp.latex(time))


@dataclass(frozen=True)
class Param:
    """One parameter tensor of a cell.

    Attributes:
        symbol: the ``MatrixSymbol`` (shape in n, m).
        kind: ``"W"`` recurrent (n × n), ``"U"`` input (n × m), ``"b"`` bias (n × 1), ``"w"``
            element-wise recurrent weight (n × 1, used as w ⊙ s_{t−1}: IndRNN's u, peepholes).
        gate: the gate it belongs to (``None`` for a single-gate cell); its position in the
            framework's stacked layout is the gate's order of first appearance.
        bias: for biases: ``"merged"`` (one vector standing for b_ih + b_hh), ``"input"`` or
            ``"hidden"`` (a bias a framework keeps on one side only, e.g. PyTorch GRU's b_hn).
    """

    symbol: MatrixSymbol
    kind: ParamKind
    gate: str | None
    bias: str | None = None


class Recurrence:
    """The builder a cell definition writes its recurrence with (one time step)."""

    def __init__(self, states: tuple[str, ...], time=t, sizes: Mapping[str, sp.Expr] | None = None):
        self.time = time
        self.prev = {s: MatrixSymbol(timed(s, time - 1), (sizes or {}).get(s, n), 1) for s in states}
        self.x = MatrixSymbol(timed("x", time), m, 1)
        self.params: dict[str, Param] = {}
        self.gates: list[str | None] = []
        self.definitions: dict[MatrixSymbol, MatrixExpr] = {}
        self.constants: dict[sp.Symbol, float] = {}

    # -- parameters -------------------------------------------------------------------------
    def _param(self, kind: ParamKind, gate: str | None, rows, cols, bias: str | None = None, label=None):
        if gate is not None:
            check_name(gate, "a gate name")
        label = check_name(label, "a parameter label") if label else (
            kind if gate is None else "%s_{%s}" % (kind, gate))
        if label not in self.params:
            if gate not in self.gates:
                self.gates.append(gate)
            self.params[label] = Param(MatrixSymbol(label, rows, cols), kind, gate, bias)
        return self.params[label].symbol

    def W(self, gate: str | None = None, label: str | None = None) -> MatrixSymbol:
        """Recurrent weight W_g (n × n; n × p when the state h has size p, as in a projected LSTM);
        ``label`` prints it under another name (M_{A})."""
        cols = self.prev["h"].shape[0] if "h" in self.prev else n
        return self._param("W", gate, n, cols, label=label)

    def U(self, gate: str | None = None, label: str | None = None) -> MatrixSymbol:
        """Input weight U_g (n × m)."""
        return self._param("U", gate, n, m, label=label)

    def w(self, gate: str | None = None, label: str | None = None) -> MatrixSymbol:
        """Element-wise recurrent weight w_g (n × 1), used as w_g ⊙ s_{t−1} (a diagonal matrix)."""
        return self._param("w", gate, n, 1, label=label)

    def const(self, name: str, value: float) -> sp.Symbol:
        """A fixed scalar hyperparameter (ε, γ, Δt) printed as ``name``, worth ``value`` in numbers.

        ``name`` is a SymPy symbol name (``"epsilon"`` prints ε); asking twice returns the same symbol.
        """
        symbol = sp.Symbol(check_name(name, "a constant's name"), positive=True)
        value = float(value)
        if symbol in self.constants and self.constants[symbol] != value:
            raise GradflowError(f"constant {name} given two values")
        self.constants[symbol] = value
        return symbol

    def b(self, gate: str | None = None, side: str = "merged") -> MatrixSymbol:
        """Bias b_g (n × 1); ``side`` ``"input"``/``"hidden"`` for a one-sided bias b_{ig}/b_{hg}."""
        if side == "merged":
            return self._param("b", gate, n, 1, "merged")
        label = "b_{%s%s}" % (side[0], gate or "")
        return self._param("b", gate, n, 1, side, label)

    def affine(self, gate: str | None = None, hidden=None) -> MatrixExpr:
        """W_g h_{t−1} + U_g x_t + b_g (``hidden`` replaces h_{t−1}, e.g. r ⊙ h_{t−1})."""
        h = self.prev["h"] if hidden is None else hidden
        return MatAdd(MatMul(self.W(gate), h), MatMul(self.U(gate), self.x), self.b(gate))

    # -- named quantities -------------------------------------------------------------------
    def let(self, name: str, expr: MatrixExpr) -> MatrixSymbol:
        """Name ``expr`` as ``name``_t; later expressions use the name."""
        symbol = MatrixSymbol(timed(check_name(name, "a named quantity"), self.time), expr.shape[0], 1)
        if symbol in self.definitions:
            raise GradflowError(f"{name} is defined twice")
        self.definitions[symbol] = expr
        return symbol


@dataclass(frozen=True)
class Step:
    """One recorded time step of a cell: s_t = F(s_{t−1}, x_t).

    Attributes:
        prev: state name → s_{t−1} symbol.
        new: state name → s_t symbol.
        x: the input x_t.
        definitions: ordered named quantities (gates, pre-activations, new states).
        params: the cell's parameters, in definition order.
        gates: gate names in order of first appearance (the frameworks' stacking order).
    """

    prev: Mapping[str, MatrixSymbol]
    new: Mapping[str, MatrixSymbol]
    x: MatrixSymbol
    definitions: Mapping[MatrixSymbol, MatrixExpr]
    params: tuple[Param, ...]
    gates: tuple
    constants: Mapping[sp.Symbol, float] = field(default_factory=dict)

    def expanded(self, symbol) -> MatrixExpr:
        """A named quantity written out in s_{t−1}, x_t and the parameters only."""
        expr = self.definitions[symbol]
        for name in reversed(list(self.definitions)):
            expr = expr.xreplace({name: self.definitions[name]})
        return expr


@dataclass(frozen=True, eq=False)
class Cell:
    """A recurrent cell: its recurrence, written once, and what is derived from it.

    Attributes:
        name: registry name (``"lstm"``).
        title: human name (``"LSTM with forget gate"``).
        states: state names, ``("h",)`` or ``("h", "c")``.
        definition: ``Recurrence -> {state: expression}`` (the recurrence).
        bias_copies: per framework convention, how many bias vectors a framework stores for
            each merged bias (PyTorch: 2, b_ih + b_hh); ``None`` where the framework has no such cell.
        torch_cell: the matching ``torch.nn`` cell class name, if any (and its keyword arguments).
        reference: BibTeX key of the paper that introduced it.
    """

    name: str
    title: str
    states: tuple[str, ...]
    definition: Callable[[Recurrence], Mapping[str, MatrixExpr]] = field(repr=False)
    bias_copies: Mapping[str, int | None] = field(default_factory=lambda: {"pytorch": 2, "keras": 1})
    torch_cell: str | None = None
    torch_kwargs: Mapping[str, str] = field(default_factory=dict)
    default_init: str = "pytorch"
    reference: str = ""
    #: state name → its size where it is not n (a projected LSTM's h has size p)
    sizes: Mapping[str, sp.Expr] = field(default_factory=dict)

    def size(self, state: str) -> sp.Expr:
        """The size of state ``state``: n unless :attr:`sizes` says otherwise."""
        return self.sizes.get(state, n)

    def step(self, time=t) -> Step:
        """Record the recurrence at time index ``time`` (a SymPy symbol or expression)."""
        rec = Recurrence(self.states, time, self.sizes)
        new = dict(self.definition(rec))
        if set(new) != set(self.states):
            raise GradflowError(f"{self.name}: the definition returned {sorted(new)}, not {self.states}")
        for s, expr in new.items():  # name every new state s_t
            want = MatrixSymbol(timed(s, time), self.size(s), 1)
            if expr != want:
                rec.let(s, expr)
        return Step(
            prev=rec.prev,
            new={s: MatrixSymbol(timed(s, time), self.size(s), 1) for s in self.states},
            x=rec.x,
            definitions=rec.definitions,
            params=tuple(rec.params.values()),
            gates=tuple(rec.gates),
            constants=dict(rec.constants),
        )

    @cached_property
    def recorded(self) -> Step:
        return self.step()

    #: label of the forget-gate bias in the recurrence (the LSTM's b_f)
    FORGET_BIAS = "b_{f}"

    @property
    def has_forget_gate(self) -> bool:
        """True when the recurrence has a forget gate f_t (a bias b_f to initialise)."""
        return any(p.symbol.name == self.FORGET_BIAS for p in self.recorded.params)

    def jacobian(self, time=t) -> StateJacobian:
        """The one-step state Jacobian ∂s_t/∂s_{t−1}, block by block (numerator layout)."""
        from .chain import total_derivatives

        st = self.step(time) if time != t else self.recorded
        blocks = {}
        for s_in in self.states:
            D = total_derivatives(st.definitions, st.prev[s_in])
            for s_out in self.states:
                blocks[(s_out, s_in)] = D[st.new[s_out]]
        return StateJacobian(self, st, blocks)

    def input_jacobian(self, time=t) -> dict[str, MatrixExpr]:
        """∂s_t/∂x_t per state (numerator layout, size(s) × m), derived by the same chain rule as
        :meth:`jacobian`: what a layer above passes down in a stacked network."""
        from .chain import total_derivatives

        st = self.step(time) if time != t else self.recorded
        D = total_derivatives(st.definitions, st.x)
        return {s: D[st.new[s]] for s in self.states}

    def _repr_latex_(self) -> str:
        return "$\\displaystyle %s$" % self.recorded_latex()

    def recorded_latex(self) -> str:
        """The recurrence as a LaTeX ``aligned`` block, one named quantity per line."""
        lines = [r"%s &= %s" % (latex(s), latex(e)) for s, e in self.recorded.definitions.items()]
        return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


@dataclass(frozen=True)
class StateJacobian(DisplaysLatex):
    """The blocks ∂(s_t)_a/∂(s_{t−1})_b of a cell's one-step Jacobian.

    Attributes:
        cell: the cell.
        step: the recorded step the blocks are written in (named quantities).
        blocks: ``(out_state, in_state)`` → SymPy matrix expression (n × n).
    """

    cell: Cell
    step: Step
    blocks: Mapping[tuple[str, str], MatrixExpr]

    def __getitem__(self, key: tuple[str, str]) -> MatrixExpr:
        return self.blocks[key]

    def block_name(self, key: tuple[str, str]) -> str:
        """LaTeX of ∂c_t/∂h_{t−1}."""
        out, inp = key
        return r"\frac{\partial %s}{\partial %s}" % (
            latex(self.step.new[out]), latex(self.step.prev[inp]))

    def latex(self) -> str:
        """All blocks as a LaTeX ``aligned`` block."""
        lines = [r"%s &= %s" % (self.block_name(k), latex(v)) for k, v in self.blocks.items()]
        return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"

    def __str__(self) -> str:
        out = []
        for (a, b), v in self.blocks.items():
            out.append(f"∂{text(self.step.new[a])}/∂{text(self.step.prev[b])} = {text(v)}")
        return "\n".join(out)
