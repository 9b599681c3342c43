"""Parameter counts, derived from a cell's recorded recurrence (no per-cell formulas).

Every parameter the recurrence uses is a ``MatrixSymbol`` with a shape in n (hidden size) and
m (input size): W_g is n × n, U_g is n × m, b_g is n × 1. A cell's count is the sum of
rows × cols over its parameters, where a *merged* bias (one vector standing for a framework's
b_ih + b_hh) counts as many times as the framework stores it (``cell.bias_copies``) and a
one-sided bias (PyTorch GRU's b_in, b_hn) counts once. Stacking and directions follow the
frameworks: layer l ≥ 2 reads the previous layer's output (size n, or 2n when bidirectional),
and a bidirectional layer holds two independent copies of the cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import sympy as sp

from .._checks import GradflowError, positive_int
from .._vocabulary import Convention
from .cell import Cell, m, n
from .cells import get_cell

#: output size k of a dense layer (also the Elman output layer V h_t + c)
k = sp.Symbol("k", integer=True, positive=True)
#: kernel height, kernel width and input channels of a 2-D convolution
k_h, k_w, c_in = sp.symbols("k_h k_w c", integer=True, positive=True)

#: framework convention → the name it is printed with
CONVENTIONS = {"pytorch": "PyTorch", "keras": "Keras", "reference": "reference-implementation"}

# Why a framework lacks a cell, where a plain "has no such cell" would not say enough.
_ABSENT = {
    ("pytorch", "gru-cho"): "no GRU with the reset gate applied before the recurrent matmul "
                            "(Keras reset_after=False)",
}


# -- helpers --------------------------------------------------------------------------------
def _monomial(coeff, powers) -> sp.Expr:
    """coeff · n^a · m^b … kept in that factor order (for printing)."""
    factors = [g ** e if e != 1 else g for g, e in powers if e]
    if coeff != 1 or not factors:
        factors.insert(0, sp.Integer(coeff))
    return factors[0] if len(factors) == 1 else sp.Mul(*factors, evaluate=False)


def _readable(expr: sp.Expr, gens: tuple[sp.Symbol, ...]) -> sp.Expr:
    """``expr`` as c·(terms by descending degree): 4n² + 4nm + 8n → 4·(n² + n·m + 2n).

    The result is left unevaluated so it prints in that form (with ``order="none"``); it is
    equal in value to ``expr`` and evaluates normally under ``subs``/``expand``.
    """
    expr = sp.expand(expr)
    if expr == 0:
        return sp.Integer(0)
    content, primitive = expr.as_content_primitive()
    terms = [_monomial(c, zip(gens, mon, strict=True)) for mon, c in sp.Poly(primitive, *gens).terms()]
    body = terms[0] if len(terms) == 1 else sp.Add(*terms, evaluate=False)
    if content == 1:
        return body
    return sp.Mul(content, body, evaluate=False)


def _join(*parts: sp.Expr) -> sp.Expr:
    """The sum of ``parts`` (each already readable), kept in the given order."""
    terms: list[sp.Expr] = []
    for part in parts:
        if part == 0:
            continue
        terms.extend(part.args if isinstance(part, sp.Add) else [part])
    if not terms:
        return sp.Integer(0)
    return terms[0] if len(terms) == 1 else sp.Add(*terms, evaluate=False)


def _text(expr: sp.Expr) -> str:
    return sp.sstr(expr, order="none")


def _latex(expr: sp.Expr) -> str:
    return sp.latex(expr, order="none", mul_symbol="dot")


def _latex_int(value: int) -> str:
    return f"{value:,}".replace(",", "{,}")


# one size in a count's description: (symbol or None, value, words after it)
_Item = tuple[sp.Symbol | None, int | None, str]


def _shape_text(items: list[_Item]) -> str:
    out = []
    for sym, value, words in items:
        head = f"{sym} = {value}" if sym is not None else ("" if value is None else str(value))
        out.append(" ".join(x for x in (head, words) if x))
    return ", ".join(out)


def _shape_latex(items: list[_Item]) -> str:
    out = []
    for sym, value, words in items:
        if sym is None:
            words = " ".join(str(x) for x in (value, words) if x is not None)
            out.append(rf"\text{{{words}}}")
        else:
            out.append(f"{sp.latex(sym)} = {value}" + (rf"\ \text{{{words}}}" if words else ""))
    return r",\ ".join(out)


def _latex_count(name: str, formula: sp.Expr, total: int, items: list[_Item]) -> str:
    """$N_name = formula = total  (sizes)$ for notebooks."""
    return (rf"$\displaystyle N_{{\text{{{name}}}}} = {_latex(formula)} = {_latex_int(total)}"
            rf" \qquad \left({_shape_latex(items)}\right)$")


# -- recurrent layers -----------------------------------------------------------------------
@dataclass(frozen=True)
class ParamCount:
    """The number of trainable parameters of a recurrent layer (stack), and its formula.

    Attributes:
        cell: the cell's registry name (``"lstm"``).
        convention: framework convention of the biases (``"pytorch"`` or ``"keras"``).
        hidden: hidden size n.
        input: input size m of the first layer.
        layers: number of stacked layers.
        bidirectional: whether every layer runs in both directions.
        output: size k of a dense output layer V h_t + c on top, or ``None``.
        formula: the count as a SymPy expression in n, m (and k with an output layer), for
            the whole stack; printed with ``order="none"`` it keeps its readable form.
        layer_formula: one layer, one direction, input size m.
        total: the count at the given sizes.
        recurrent_weights: entries of all recurrent matrices W (n × n per gate).
        input_weights: entries of all input matrices U (n × m, or n × n·dirs above layer 1).
        biases: entries of all bias vectors (merged biases counted per stored copy).
        output_params: entries of the output layer (weights and bias), 0 without one.
        title: the cell's human name.
    """

    cell: str
    convention: Convention
    hidden: int
    input: int
    layers: int
    bidirectional: bool
    output: int | None
    formula: sp.Expr
    layer_formula: sp.Expr
    total: int
    recurrent_weights: int
    input_weights: int
    biases: int
    output_params: int
    title: str = ""
    proj_size: int = 0
    parts: tuple[tuple[str, int], ...] = ()
    source: str = ""
    not_counted: str = ""

    @property
    def breakdown(self) -> dict[str, int]:
        """The total split into recurrent weights, input weights, biases and output layer."""
        return {"recurrent_weights": self.recurrent_weights, "input_weights": self.input_weights,
                "biases": self.biases, "output_layer": self.output_params}

    def _items(self) -> list[_Item]:
        items: list[_Item] = [(n, self.hidden, ""), (m, self.input, "")]
        if self.proj_size:
            from .projected import p

            items.append((p, self.proj_size, ""))
        if self.output is not None:
            items.append((k, self.output, ""))
        if self.layers > 1:
            items.append((None, self.layers, "layers"))
        if self.bidirectional:
            items.append((None, None, "bidirectional"))
        return items

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: sizes, formulas (text and LaTeX), total and breakdown."""
        return {
            "cell": self.cell, "convention": self.convention, "hidden": self.hidden,
            "input": self.input, "layers": self.layers, "bidirectional": self.bidirectional,
            "output": self.output, "formula": _text(self.formula),
            "formula_latex": _latex(self.formula), "layer_formula": _text(self.layer_formula),
            "total": self.total, **self.breakdown,
            **({"proj_size": self.proj_size} if self.proj_size else {}),
            **({"parts": dict(self.parts), "source": self.source, "not_counted": self.not_counted}
               if self.parts else {}),
        }

    def __str__(self) -> str:
        title = f": {self.title}" if self.title else ""
        head = f"{self.cell}{title}; {CONVENTIONS[self.convention]} convention"
        rows = [f"{head}; {_shape_text(self._items())}",
                f"  formula            {_text(self.formula)}"]
        if self.layers > 1 or self.bidirectional:
            rows.append(f"  per layer          {_text(self.layer_formula)}  (first layer, one direction)")
        width = len(f"{self.total:,}")
        if self.parts:
            rows.append(f"  counted            {self.source}")
            rows += [f"    {name:30s} {value:>{width},}" for name, value in self.parts]
            rows.append(f"  not counted        {self.not_counted}")
        for label, value in (("recurrent weights", self.recurrent_weights),
                             ("input weights", self.input_weights), ("biases", self.biases),
                             ("output layer", self.output_params if self.output else None),
                             ("total", self.total)):
            if value is not None:
                rows.append(f"  {label:18s} {value:>{width},}")
        return "\n".join(rows)

    def _repr_latex_(self) -> str:
        return _latex_count(self.cell, self.formula, self.total, self._items())


def _convention(cell: Cell, convention: str) -> tuple[Convention, int]:
    """The normalised convention name and the stored copies per merged bias."""
    key = str(convention).strip().lower()
    if key not in cell.bias_copies:
        known = ", ".join(cell.bias_copies)
        raise GradflowError(f"unknown convention {convention!r}; known conventions: {known}")
    copies = cell.bias_copies[key]
    key = cast(Convention, key)
    if copies is None:
        others = [c for c, v in cell.bias_copies.items() if v is not None]
        why = _ABSENT.get((key, cell.name), f"no {cell.title} cell")
        use = f"; use --convention {others[0]}" if others else ""
        raise GradflowError(f"{CONVENTIONS.get(key, key)} has {why}{use}")
    return key, copies


def _layer_parts(cell: Cell, copies: int) -> dict[str, sp.Expr]:
    """Symbolic entries per kind (W, U, b) of one layer, one direction, in n and m."""
    parts = {"W": sp.Integer(0), "U": sp.Integer(0), "b": sp.Integer(0)}
    for p in cell.recorded.params:
        if p.kind not in parts and p.kind != "w":
            raise GradflowError(f"{cell.name}: parameter {p.symbol.name} has unknown kind {p.kind!r}")
        rows, cols = p.symbol.shape
        times = copies if p.bias == "merged" else 1
        parts["W" if p.kind == "w" else p.kind] += times * rows * cols  # w: a recurrent weight
    return parts


def _reference_count(cell: Cell, hidden: int, input: int, heads: int | None) -> ParamCount:
    """The ``reference`` convention: the reference module's tensors (``ssm_cells.REFERENCE_MODULES``)."""
    from .ssm_cells import REFERENCE_MODULES, H, N, R, d

    ref = REFERENCE_MODULES.get(cell.name)
    if ref is None:
        raise GradflowError(f"the reference convention counts the state-space cells' reference modules "
                            f"({', '.join(REFERENCE_MODULES)}); use pytorch or keras for {cell.name}")
    if heads is not None and not ref.width:
        raise GradflowError(f"heads applies to the reference count of rg-lru, not {cell.name}")
    heads = 1 if heads is None else positive_int(heads, "number of heads")
    if ref.width:
        if hidden != input:
            raise GradflowError(f"{cell.name}: the reference module has one state per input channel "
                                f"(width d = hidden = input); got hidden {hidden}, input {input}")
        if hidden % heads:
            raise GradflowError(f"{cell.name}: width {hidden} is not a multiple of {heads} heads")
        at = {d: hidden, H: heads, N: 1, R: 1}
    else:
        if hidden % input:
            raise GradflowError(f"{cell.name}: hidden size {hidden} is not channels × state size "
                                f"(channels d = input = {input}); give a multiple of {input}")
        at = {d: input, N: hidden // input, R: -(-input // 32), H: 1}
    counts = [(name, kind, int(expr.subs(at))) for name, kind, expr in ref.parts]
    by_kind = {k: sum(c for _, kind, c in counts if kind == k) for k in ("w", "U", "b")}
    formula = sp.Add(*[expr for _, _, expr in ref.parts], evaluate=False)
    total = sum(by_kind.values())
    if total != int(sp.expand(formula).subs(at)):
        raise AssertionError(f"{cell.name}: reference formula and parts disagree")
    return ParamCount(cell=cell.name, convention="reference", hidden=hidden, input=input, layers=1,
                      bidirectional=False, output=None, formula=formula, layer_formula=formula, total=total,
                      recurrent_weights=by_kind["w"], input_weights=by_kind["U"], biases=by_kind["b"],
                      output_params=0, title=cell.title, parts=tuple((nm, c) for nm, _, c in counts),
                      source=("d = {}, N = {}, R = {}; ".format(*(at[x] for x in (d, N, R))) if not ref.width
                              else f"d = {hidden}, H = {heads}; ") + ref.source,
                      not_counted=ref.not_counted)


def count_params(cell: str | Cell, hidden: int, input: int, *, convention: Convention = "pytorch",
                 layers: int = 1, bidirectional: bool = False, output: int | None = None,
                 proj_size: int = 0, heads: int | None = None) -> ParamCount:
    """Count the trainable parameters of a recurrent layer, from the cell's recurrence.

    Arguments:
        cell: a cell name (``"lstm"``, aliases allowed) or a :class:`~gradflow.Cell`.
        hidden: hidden size n.
        input: input size m (of the first layer).
        convention: ``"pytorch"`` (b_ih and b_hh for every gate) or ``"keras"`` (one bias;
            the ``"gru"`` cell is Keras ``reset_after=True``, ``"gru-cho"`` ``reset_after=False``).
        layers: stacked layers; layer l ≥ 2 has input size n (2n when bidirectional).
        bidirectional: every layer twice, once per direction.
        output: size k of a dense output layer V h_t + c on top ((n·dirs)·k + k), or ``None``.
        proj_size: p > 0 for PyTorch's projected LSTM (``nn.LSTM(proj_size=p)``): the cell of
            :func:`gradflow._symbolic.projected.projected`, W_hr p × n, recurrent weights n × p,
            layers above the first read D·p features.
        heads: Griffin's gate heads H (``reference`` convention of ``rg-lru`` only; default 1).

    ``convention="reference"`` (the state-space cells only) counts the reference module's tensors
    that the recurrence reads, rows shared (``gradflow._symbolic.ssm_cells.REFERENCE_MODULES``):
    Mamba's scan d·N + (R + N)·d + R·d + d with d = input (channels), N = hidden/input,
    R = ⌈d/32⌉; S4D d + 2·d·N; RG-LRU d + 2·(d²/H + d) with d = hidden = input. One layer, one
    direction, no output layer.

    Returns:
        A :class:`ParamCount` with the formula, the total and its breakdown.

    Raises:
        ValueError: unknown cell or convention, a cell the framework does not have,
            a size or layer count that is not a positive integer.
    """
    cell = get_cell(cell)
    if str(convention).strip().lower() == "reference":
        if layers != 1 or bidirectional or output is not None:
            raise GradflowError("the reference convention counts one recurrence (one layer, one "
                                "direction, no output layer)")
        return _reference_count(cell, positive_int(hidden, "hidden size"), positive_int(input, "input size"),
                                heads)
    if heads is not None:
        raise GradflowError("heads applies to the reference convention of rg-lru")
    key, copies = _convention(cell, convention)
    hidden = positive_int(hidden, "hidden size")
    input = positive_int(input, "input size")
    layers = positive_int(layers, "number of layers")
    output = None if output is None else positive_int(output, "output size")
    dirs = 2 if bidirectional else 1
    proj = positive_int(proj_size, "proj_size", minimum=0)
    width: sp.Symbol = n
    gens: tuple[sp.Symbol, ...] = (n, m)
    if proj:
        from .projected import p, projected

        if proj >= hidden:
            raise GradflowError(f"proj_size must be smaller than the hidden size {hidden}, got {proj}")
        if key != "pytorch":
            raise GradflowError("proj_size is PyTorch's (nn.LSTM(proj_size=p)); use --convention pytorch")
        cell = projected(cell)
        width, gens = p, (n, m, p)

    parts = _layer_parts(cell, copies)
    deeper = {kind: e.subs(m, dirs * width) for kind, e in parts.items()}  # layers 2..L
    stack = {kind: dirs * (parts[kind] + (layers - 1) * deeper[kind]) for kind in parts}
    out = k * dirs * width + k if output is not None else sp.Integer(0)

    rnn = sum(stack.values(), sp.Integer(0))
    formula = _join(_readable(rnn, gens), _readable(out, (k, width)) if output is not None else out)
    layer_formula = _readable(sum(parts.values(), sp.Integer(0)), gens)

    at = {n: hidden, m: input, k: output if output is not None else 0}
    if proj:
        at[p] = proj
    values = {kind: int(e.subs(at)) for kind, e in stack.items()}
    out_value = int(out.subs(at))
    total = int(sp.expand(formula).subs(at))
    if total != sum(values.values()) + out_value:  # the readable form must equal the parts
        raise AssertionError(f"{cell.name}: formula and breakdown disagree")
    return ParamCount(cell=cell.name, convention=key, hidden=hidden, input=input, layers=layers,
                      bidirectional=bool(bidirectional), output=output, formula=formula,
                      layer_formula=layer_formula, total=total, recurrent_weights=values["W"],
                      input_weights=values["U"], biases=values["b"], output_params=out_value,
                      title=cell.title, proj_size=proj)


# -- feed-forward layers --------------------------------------------------------------------
@dataclass(frozen=True)
class LayerCount:
    """The number of trainable parameters of a feed-forward layer (dense or convolution).

    Attributes:
        layer: ``"dense"`` or ``"conv2d"``.
        sizes: ``(name, value)`` pairs of the sizes it was counted at.
        bias: whether the layer has a bias.
        formula: the count as a SymPy expression (dense: n·k + k; conv: (k_h·k_w·c + 1)·k).
        total: the count at the given sizes.
        weights: weight entries.
        biases: bias entries.
    """

    layer: str
    sizes: tuple[tuple[str, int], ...]
    bias: bool
    formula: sp.Expr
    total: int
    weights: int
    biases: int

    @property
    def breakdown(self) -> dict[str, int]:
        """The total split into weights and biases."""
        return {"weights": self.weights, "biases": self.biases}

    def _items(self) -> list[_Item]:
        items: list[_Item] = [(_SIZE_LABELS[name][0], value, _SIZE_LABELS[name][1])
                              for name, value in self.sizes]
        if not self.bias:
            items.append((None, None, "no bias"))
        return items

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: sizes, formula (text and LaTeX), total and breakdown."""
        return {"layer": self.layer, **dict(self.sizes), "bias": self.bias,
                "formula": _text(self.formula), "formula_latex": _latex(self.formula),
                "total": self.total, **self.breakdown}

    def __str__(self) -> str:
        width = len(f"{self.total:,}")
        rows = [f"{self.layer} layer: {_shape_text(self._items())}",
                f"  formula  {_text(self.formula)}",
                f"  weights  {self.weights:>{width},}",
                f"  biases   {self.biases:>{width},}",
                f"  total    {self.total:>{width},}"]
        return "\n".join(rows)

    def _repr_latex_(self) -> str:
        return _latex_count(self.layer, self.formula, self.total, self._items())


# size name → (its symbol in the formula, the words after its value)
_SIZE_LABELS = {"inputs": (n, "inputs"), "outputs": (k, "outputs"), "kernel_h": (k_h, ""),
                "kernel_w": (k_w, ""), "in_channels": (c_in, "input channels"),
                "filters": (k, "filters")}


def _layer_count(layer: str, sizes: dict[sp.Symbol, tuple[str, int]], weights: sp.Expr,
                 biases: sp.Expr, formula: sp.Expr, bias: bool) -> LayerCount:
    at = {sym: value for sym, (_, value) in sizes.items()}
    w, b = int(weights.subs(at)), int(biases.subs(at)) if bias else 0
    if not bias:
        formula = weights
    total = int(sp.expand(formula).subs(at))
    if total != w + b:
        raise AssertionError(f"{layer}: formula and breakdown disagree")
    return LayerCount(layer=layer, sizes=tuple(sizes.values()), bias=bool(bias), formula=formula,
                      total=total, weights=w, biases=b)


def dense_params(inputs: int, outputs: int, bias: bool = True) -> LayerCount:
    """Count the parameters of a dense (fully connected) layer y = V x + c.

    Arguments:
        inputs: input size n.
        outputs: output size k.
        bias: whether the layer adds a bias c (k entries).

    Returns:
        A :class:`LayerCount` with formula n·k + k (n·k without bias); 128 → 10 gives 1,290.
    """
    sizes = {n: ("inputs", positive_int(inputs, "input size")), k: ("outputs", positive_int(outputs, "output size"))}
    weights = sp.Mul(n, k, evaluate=False)
    return _layer_count("dense", sizes, weights, k, sp.Add(weights, k, evaluate=False), bias)


def conv_params(kernel_h: int, kernel_w: int, in_channels: int, filters: int,
                bias: bool = True) -> LayerCount:
    """Count the parameters of a 2-D convolution layer.

    Arguments:
        kernel_h: kernel height k_h.
        kernel_w: kernel width k_w.
        in_channels: input channels c.
        filters: number of filters (output channels) k.
        bias: whether every filter has a bias.

    Returns:
        A :class:`LayerCount` with formula (k_h·k_w·c + 1)·k (k_h·k_w·c·k without bias).
    """
    sizes = {k_h: ("kernel_h", positive_int(kernel_h, "kernel height")),
             k_w: ("kernel_w", positive_int(kernel_w, "kernel width")),
             c_in: ("in_channels", positive_int(in_channels, "input channels")),
             k: ("filters", positive_int(filters, "number of filters"))}
    per_filter = sp.Mul(k_h, k_w, c_in, evaluate=False)
    weights = sp.Mul(k_h, k_w, c_in, k, evaluate=False)
    formula = sp.Mul(sp.Add(per_filter, 1, evaluate=False), k, evaluate=False)
    return _layer_count("conv2d", sizes, weights, k, formula, bias)
