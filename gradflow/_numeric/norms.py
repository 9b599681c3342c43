"""The norms gradflow measures: one row each, read by the engine, the analysis, the plots and the CLI.

A new norm is one :class:`NormSpec` in :data:`NORMS` (plus its computation in the sweep).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from .._checks import one_of

#: the norm names accepted by ``norm=`` arguments: ``"2"`` spectral, ``"fro"`` Frobenius
NormName = Literal["2", "fro"]


@dataclass(frozen=True)
class NormSpec:
    """One measured norm of the products ∂s_T/∂s_k.

    Attributes:
        name: the ``norm=`` value (``"2"``).
        field: the :class:`~gradflow.Curves` attribute and JSON key of its log10 curve.
        subscript: how ‖·‖ is subscripted in plots and LaTeX (``"2"``, ``"F"``).
        title: its name in prose (``"spectral"``).
    """

    name: NormName
    field: str
    subscript: str
    title: str


NORMS: dict[str, NormSpec] = {
    "2": NormSpec("2", "log10_norm_2", "2", "spectral"),
    "fro": NormSpec("fro", "log10_norm_fro", "F", "Frobenius"),
}
assert set(NORMS) == set(get_args(NormName))


def get_norm(name: object) -> NormSpec:
    """The :class:`NormSpec` of ``name``; ``GradflowError`` naming the choices otherwise."""
    return NORMS[one_of(name, "norm", tuple(NORMS))]  # type: ignore[index]
