"""Your own cell: a recurrence in a few lines, with the building blocks the library's cells use.

    >>> import gradflow as gf
    >>> @gf.define_cell("my-cell", title="leaky tanh RNN")
    ... def my_cell(r):
    ...     lam = r.const("lambda", 0.9)
    ...     a = r.let("a", r.affine())
    ...     return {"h": lam * r.prev["h"] + (1 - lam) * gf.tanh(a)}

After that ``my_cell`` is a :class:`~gradflow.Cell` like ``gf.CELLS["lstm"]``: its Jacobian blocks
(``my_cell.jacobian()``), parameter counts (``gf.count_params(my_cell, ...)``), networks and
gradient flow (``gf.network(my_cell, ...)``), plots and reports all follow from the recurrence.
With ``register=True`` its name also works wherever a cell name does (``gf.get_cell("my-cell")``,
``gf.write_report(["lstm", "my-cell"], ...)``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from sympy.matrices.expressions.matexpr import MatrixExpr

from .._checks import GradflowError
from .cell import Cell, Recurrence, check_name
from .cells import ALIASES, CELLS

Definition = Callable[[Recurrence], Mapping[str, MatrixExpr]]


def make_cell(name: str, definition: Definition, *, states: Sequence[str] = ("h",),
              title: str | None = None, reference: str = "", bias_copies: Mapping[str, int | None] | None = None,
              default_init: str = "pytorch", register: bool = False) -> Cell:
    """A :class:`~gradflow.Cell` from its recurrence, checked by deriving its Jacobian once.

    Arguments:
        name: the cell's name (``"my-cell"``); lower case, no spaces.
        definition: ``r -> {state: expression}``, written with the :class:`~gradflow.Recurrence`
            builder ``r``: previous states ``r.prev["h"]``, input ``r.x``, parameters ``r.W(g)``
            (n × n), ``r.U(g)`` (n × m), ``r.b(g)`` (n), ``r.w(g)`` (n, used as w ⊙ s),
            ``r.affine(g)`` = W_g h + U_g x + b_g, fixed scalars ``r.const(name, value)``, named
            quantities ``r.let(name, expr)``; element-wise ``gf.tanh``, ``gf.sigmoid``,
            ``gf.relu``, ``gf.hadamard`` (⊙), ``gf.one_minus`` (1 − v) and SymPy's +, ·, ``.T``.
        states: the state names; ``"h"`` must be one of them (the output). A state ``"c"``
            is treated as an LSTM cell state (carousel and 1997 truncation).
        title: the human name (default: ``name``).
        reference: a BibTeX key of gradflow's ``references.bib`` (reports cite it), or ``""``.
        bias_copies: stored bias vectors per merged bias, per convention (default: one for both).
        default_init: the cell's default initialisation scheme (see ``gf.INIT_SCHEMES``).
        register: also make ``name`` known to :func:`gradflow.get_cell` (and so to reports).

    Raises:
        GradflowError: a bad name or states, a definition that does not return every state,
            or one whose derivative gradflow's chain rule cannot take (the message says which
            form; the building blocks above are always differentiable).
    """
    key = _checked_name(name)
    states = tuple(check_name(s, "a state name") for s in states)
    if "h" not in states or len(set(states)) != len(states):
        raise GradflowError(f"states must be distinct names including 'h', got {states}")
    cell = Cell(key, _checked_title(title or key), states, definition,
                bias_copies=dict(bias_copies or {"pytorch": 1, "keras": 1}),
                default_init=default_init, reference=reference)
    try:
        step = cell.recorded
        for s in states:  # each new state is a column of its state's size (h: n entries)
            named = [v for k, v in step.definitions.items() if k.name == step.new[s].name]
            if named and tuple(named[0].shape) != tuple(step.new[s].shape):
                raise GradflowError(f"state {s} must be a column of {step.new[s].shape[0]} entries, the "
                                    f"definition returned one of shape {tuple(named[0].shape)}")
        cell.jacobian()
    except (NotImplementedError, ValueError, TypeError, AttributeError) as e:
        raise GradflowError(f"cell {key!r}: {e}") from e
    if register:
        register_cell(cell)
    return cell


def _checked_name(name: object) -> str:
    key = str(name).strip().lower()
    if not key or any(ch.isspace() for ch in key):
        raise GradflowError(f"a cell name is one word, got {name!r}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.+-]*", key):  # it names figure files and reaches LaTeX
        raise GradflowError(f"a cell name is one word of letters, digits and - _ . + (it names the "
                            f"report's figure files), got {name!r}")
    return key


#: what a user cell's title may not hold: the report's inline markup ($math$, `code`, [@cite],
#: [#ref]), HTML, backslashes, '=' (which would make the rest of the title a formula, printed raw)
_TITLE_BAD = re.compile(r"[\x00-\x1f\x7f$`\[\]<>\\=]")


def _checked_title(title: object) -> str:
    text = str(title)
    bad = _TITLE_BAD.search(text)
    if not text.strip() or bad:
        what = "is empty" if bad is None else f"holds {bad.group(0)!r}"
        raise GradflowError(f"a cell title is one line of plain text (it is printed into the report's "
                            f"headings and figures, without $ ` [ ] < > \\ =); {title!r} {what}")
    return text


def define_cell(name: str, **options) -> Callable[[Definition], Cell]:
    """Decorator form of :func:`make_cell`: ``@define_cell("my-cell")`` over the definition."""

    def wrap(definition: Definition) -> Cell:
        return make_cell(name, definition, **options)

    return wrap


def register_cell(cell: Cell, *, replace: bool = False) -> Cell:
    """Add ``cell`` to :data:`gradflow.CELLS` under its name (``replace`` to overwrite a user cell)."""
    if not isinstance(cell, Cell):
        raise GradflowError(f"register_cell needs a Cell (from make_cell or define_cell), got {type(cell).__name__}")
    if _checked_name(cell.name) != cell.name:
        raise GradflowError(f"a cell name is lower case without surrounding spaces, got {cell.name!r}")
    _checked_title(cell.title)
    if cell.name in ALIASES or (cell.name in CELLS and not replace):
        raise GradflowError(f"a cell named {cell.name!r} already exists")
    dashed = cell.name.replace("_", "-")  # get_cell reads 'lstm_1997' as 'lstm-1997'
    if dashed != cell.name and (dashed in CELLS or dashed in ALIASES):
        raise GradflowError(f"a cell named {cell.name!r} would hide {dashed!r}, which get_cell also finds "
                            f"as {cell.name!r}; choose another name")
    CELLS[cell.name] = cell
    return cell
