"""gradflow: why gradients vanish in recurrent networks, in exact mathematics and real numbers.

* Symbolic core (SymPy): every cell's recurrence written once (:data:`CELLS`), its Jacobian
  blocks derived by gradflow's matrix chain rule (:meth:`Cell.jacobian`, :func:`jacobian`), the
  product over time, the Pascanu bound and the LSTM's carousel (:func:`state_product`,
  :func:`pascanu_bound`, :func:`carousel`, :func:`truncated_jacobian`), parameter counts.
* Numeric engine (NumPy, CuPy): the same expressions on real weights (:func:`network`,
  :func:`gradient_flow`, :func:`singular_values`, :func:`lyapunov_exponents`).
* Views: plots, derivation reports, the ``gradflow`` command line.
"""

from ._checks import GradflowError
from ._numeric.analysis import PhaseGrid, decay_table, phase_grid
from ._numeric.flow import (
    Curves,
    Flow,
    Product,
    decay_rate,
    gradient_flow,
    loss_gradient,
    lyapunov_exponents,
    products,
    singular_values,
)
from ._numeric.gru_bound import gru_step_bound
from ._numeric.modern_init import chrono_init, exprnn_init, lru_ring_init
from ._numeric.network import Network, Trajectory, network, random_inputs
from ._numeric.paths import CellStatePaths, cell_state_paths, state_drift
from ._numeric.spectral import spectral_norm
from ._numeric.spread import Spread, flow_spread
from ._numeric.ssm_init import mamba_init, rglru_init, s4d_init
from ._numeric.stack import StackedFlow, StackedNetwork, stacked_flow, stacked_gradients, stacked_network
from ._numeric.sweep_grid import GridPoint, grid_points, measure_point, phase_grids
from ._numeric.sweep_run import SweepResult, run_sweep
from ._numeric.weights import INIT_SCHEMES, Weights, from_state_dict, init_weights, load_weights, to_state_dict
from ._symbolic.activations import ACTIVATIONS, Activation, relu, sigmoid, tanh
from ._symbolic.cell import Cell, Param, Recurrence, StateJacobian, Step, m, n, t
from ._symbolic.cells import CELLS, get_cell
from ._symbolic.chain import jacobian, total_derivatives
from ._symbolic.custom import define_cell, make_cell, register_cell
from ._symbolic.many_steps import (
    Bound,
    Carousel,
    StateProduct,
    carousel,
    pascanu_bound,
    state_product,
    truncated_jacobian,
)
from ._symbolic.nodes import Diag, Elementwise, hadamard, one_minus
from ._symbolic.params import LayerCount, ParamCount, conv_params, count_params, dense_params
from ._symbolic.printing import latex
from ._symbolic.projected import projected
from ._version import __version__
from ._views.plots import (
    figure_style,
    paper_style,
    plot_carousel,
    plot_cell_state_paths,
    plot_decay,
    plot_decay_band,
    plot_depth_time,
    plot_jacobian,
    plot_memory_paths,
    plot_phase_diagram,
    plot_spectrum,
    save_figure,
)
from ._views.report import write_report
from ._views.sweep_plots import plot_sweep_rates, write_sweep_figures
from ._views.training_plots import plot_training_curves

__all__ = [
    # symbolic core
    "ACTIVATIONS", "Activation", "CELLS", "Cell", "Diag", "Elementwise", "Param", "Recurrence",
    "StateJacobian", "Step", "get_cell", "hadamard", "jacobian", "latex", "m", "n", "relu",
    "sigmoid", "t", "tanh", "total_derivatives",
    "define_cell", "make_cell", "one_minus", "register_cell",
    "Bound", "Carousel", "StateProduct", "carousel", "pascanu_bound", "state_product",
    "truncated_jacobian",
    "LayerCount", "ParamCount", "conv_params", "count_params", "dense_params",
    # numeric engine
    "INIT_SCHEMES", "Weights", "from_state_dict", "init_weights", "load_weights", "to_state_dict",
    "chrono_init", "lru_ring_init",
    "mamba_init", "rglru_init", "s4d_init",
    "exprnn_init",
    "Network", "Trajectory", "network", "random_inputs",
    "Curves", "Flow", "Product", "decay_rate", "gradient_flow", "loss_gradient", "lyapunov_exponents", "products",
    "singular_values", "spectral_norm",
    "PhaseGrid", "decay_table", "phase_grid",
    "GridPoint", "SweepResult", "grid_points", "measure_point", "phase_grids", "run_sweep",
    "StackedFlow", "StackedNetwork", "projected", "stacked_flow", "stacked_gradients", "stacked_network",
    # views
    "paper_style", "plot_carousel", "plot_decay", "plot_jacobian", "plot_phase_diagram",
    "plot_spectrum", "save_figure", "write_report",
    "plot_sweep_rates", "write_sweep_figures",
    "plot_training_curves", "plot_depth_time",
    "GradflowError", "__version__",
    # report content: paths, drift, spread, the GRU bound, figures sized for print
    "CellStatePaths", "Spread", "cell_state_paths", "flow_spread", "gru_step_bound", "state_drift",
    "figure_style", "plot_cell_state_paths", "plot_decay_band",
    "plot_memory_paths",
]


def __getattr__(name: str):
    """``gradflow.torch`` (the training hook) on first use, so that ``import gradflow`` stays light."""
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'gradflow' has no attribute {name!r}")
