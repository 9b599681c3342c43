"""The words gradflow's arguments accept, as types (ground floor: imports nothing from gradflow).

Each vocabulary is a ``Literal`` alias, so a type checker sees a misspelt word, and a tuple of
its words (``get_args``) for the run-time check in :func:`gradflow._checks.one_of`.
"""

from __future__ import annotations

from typing import Literal, get_args

#: parameter-count conventions: PyTorch (two bias vectors per gate), Keras (one), or the reference
#: implementation of a state-space cell (Mamba, S4D, Griffin: shared rows, see ``ssm_cells``)
Convention = Literal["pytorch", "keras", "reference"]
#: kinds of a cell's parameters: recurrent W, input U, bias b, element-wise recurrent w
ParamKind = Literal["W", "U", "b", "w"]
#: how a block of the one-step Jacobian is stored: a dense matrix, a diagonal, or the identity
BlockKind = Literal["dense", "diag", "identity"]
#: how spectral norms are computed: certified subspace iteration (default) or an SVD at every k
SpectralMethod = Literal["power", "svd"]
#: how gradient_flow measures: chosen by size and memory, the exact sweep, or matrix-free VJPs
FlowMode = Literal["auto", "exact", "matrix-free"]
#: the dtype of the backward products
ChainDtype = Literal["float64", "float32"]
#: weight initialisation schemes; the last five are the state-space cells' reference inits
InitScheme = Literal["pytorch", "glorot", "orthogonal", "identity", "gaussian",
                     "mamba", "s4d-lin", "s4d-real", "rg-lru", "lru-ring"]

CONVENTIONS: tuple[str, ...] = get_args(Convention)
PARAM_KINDS: tuple[str, ...] = get_args(ParamKind)
BLOCK_KINDS: tuple[str, ...] = get_args(BlockKind)
SPECTRAL_METHODS: tuple[str, ...] = get_args(SpectralMethod)
INIT_SCHEMES: tuple[str, ...] = get_args(InitScheme)
FLOW_MODES: tuple[str, ...] = get_args(FlowMode)
CHAIN_DTYPES: tuple[str, ...] = get_args(ChainDtype)
#: the loss whose gradient the flow follows: Σ h_T, cross-entropy of a head on h_T, or on every h_t
Loss = Literal["sum", "last", "every"]
LOSSES: tuple[str, ...] = get_args(Loss)
#: expRNN initialisations of the log-orthogonal A (gradflow.exprnn_init)
ExprnnInit = Literal["henaff", "cayley", "random", "orthogonal"]
EXPRNN_INITS: tuple[str, ...] = get_args(ExprnnInit)
#: where a report's figures go: one column of a two-column page, the full page width, a slide
FigureSizeName = Literal["one-column", "two-column", "slide"]
FIGURE_SIZE_NAMES: tuple[str, ...] = get_args(FigureSizeName)
