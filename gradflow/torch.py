"""gradflow during PyTorch training: ``import gradflow.torch``.

* :class:`Recorder`: called from an ordinary training loop (``rec.step(step)``), it measures the
  gradient-flow curves of the module's current weights on a fixed probe batch every ``every``
  steps and appends them to a JSON-lines file (and TensorBoard, when asked and installed).
* :func:`read_records`: the recordings of such a file.
* :func:`plot_training_curves`: the decay curves coloured by training step.

Torch is imported only when a Recorder reads a module; importing this module imports no torch.
"""

from ._numeric.training import Recorder, read_records, torch_cell_name
from ._views.training_plots import plot_training_curves

__all__ = ["Recorder", "plot_training_curves", "read_records", "torch_cell_name"]
