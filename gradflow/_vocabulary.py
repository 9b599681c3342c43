"""The words gradflow's arguments accept, as types (ground floor: imports nothing from gradflow).

Each vocabulary is a ``Literal`` alias, so a type checker sees a misspelt word, and a tuple of
its words (``get_args``) for the run-time check in :func:`gradflow._checks.one_of`.
"""

from __future__ import annotations

from typing import Literal, get_args

#: parameter-count conventions: PyTorch (two bias vectors per gate) or Keras (one)
Convention = Literal["pytorch", "keras"]
#: kinds of a cell's parameters: recurrent W, input U, bias b, element-wise recurrent w
ParamKind = Literal["W", "U", "b", "w"]
#: how a block of the one-step Jacobian is stored: a dense matrix, a diagonal, or the identity
BlockKind = Literal["dense", "diag", "identity"]
#: how spectral norms are computed: certified subspace iteration (default) or an SVD at every k
SpectralMethod = Literal["power", "svd"]
#: weight initialisation schemes
InitScheme = Literal["pytorch", "glorot", "orthogonal", "identity", "gaussian"]

CONVENTIONS: tuple[str, ...] = get_args(Convention)
PARAM_KINDS: tuple[str, ...] = get_args(ParamKind)
BLOCK_KINDS: tuple[str, ...] = get_args(BlockKind)
SPECTRAL_METHODS: tuple[str, ...] = get_args(SpectralMethod)
INIT_SCHEMES: tuple[str, ...] = get_args(InitScheme)
#: where a report's figures go: one column of a two-column page, the full page width, a slide
FigureSizeName = Literal["one-column", "two-column", "slide"]
FIGURE_SIZE_NAMES: tuple[str, ...] = get_args(FigureSizeName)
