"""The lecture notebook examples/lecture.ipynb runs headless, top to bottom, and its sliders redraw.

nbclient executes every cell in a fresh ``python3`` kernel (ipykernel, from the same Python as the
tests); then one more cell, run in the same kernel, moves the sliders as a person would and
reports what the redraw callback drew. ipywidgets is imported by the notebook only, never by
``import gradflow`` (tests/test_architecture.py checks that).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("ipywidgets")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "lecture.ipynb"

# run in the notebook's kernel after all its cells: move the sliders, report what was redrawn
PROBE = r'''
import json as _json

def _seen():
    ax = shown["figure"].axes[0]
    return {"redraws": shown["redraws"], "rates": shown["rates"], "title": ax.get_title(),
            "labels": [line.get_label() for line in ax.get_lines()],
            "points": len(ax.get_lines()[0].get_xdata()),
            "outputs": [sorted(o.get("data", {})) for o in plot_area.outputs]}

_report = {"first": _seen()}
sliders["forget_bias"].value = 3.0          # each change calls redraw through observe
_report["b_f = 3"] = _seen()
sliders["gain"].value = 0.5
sliders["steps"].value = 30
_report["gain 0.5, T 30"] = _seen()
redraw()                                    # the callback called directly
_report["direct"] = _seen()
print("PROBE " + _json.dumps(_report))
'''


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                                     resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}})
    client.execute()            # raises CellExecutionError, with the traceback, if a cell fails
    return nb


def test_notebook_is_clean_and_uses_the_public_api():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert all(not c.outputs for c in nb.cells if c.cell_type == "code"), "commit it without outputs"
    assert "import gradflow as gf" in source and "gradflow._" not in source
    for api in ("gf.network(", "gf.gradient_flow(", "gf.random_inputs(", "gf.plot_decay(",
                ".jacobian()", "gf.pascanu_bound(", "gf.carousel(", "gf.decay_rate("):
        assert api in source, api


def test_every_cell_ran_and_showed_its_result(executed):
    code = [c for c in executed.cells if c.cell_type == "code"]
    for cell in code:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
    kinds = [set(o.get("data", {})) for c in code for o in c.outputs]
    assert any("image/png" in k for k in kinds), "no figure was drawn"
    assert any("text/latex" in k for k in kinds), "no derived formula was displayed"
    assert any("application/vnd.jupyter.widget-view+json" in k for k in kinds), "no sliders shown"
    text = "".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream")
    assert "gamma = sup|phi'| = 1/4" in text
    assert "sigma_max(W) = 1.300000, sigma_min(W) = 1.300000" in text   # gain is sigma_max(W)


def test_sliders_redraw_the_decay_curves(executed):
    probe = executed.cells[-1]
    line = next(o["text"] for o in probe.outputs if o.output_type == "stream" and "PROBE " in o["text"])
    seen = json.loads(line.split("PROBE ", 1)[1])
    first, bf3, small, direct = seen["first"], seen["b_f = 3"], seen["gain 0.5, T 30"], seen["direct"]
    assert first["redraws"] == 1 and bf3["redraws"] == 2 and small["redraws"] == 4 and direct["redraws"] == 5
    assert first["labels"][0] == "tanh RNN" and "LSTM" in first["labels"][-1]
    assert first["points"] == 60 and small["points"] == 30
    assert r"\sigma_{\max}(W) = 1$" in first["title"] and r"\sigma_{\max}(W) = 0.5$" in small["title"]
    # the LSTM vanishes more slowly than the tanh RNN, and a larger forget-gate bias slows it more
    assert first["rates"]["tanh RNN"] < first["rates"]["LSTM"] < 0
    assert bf3["rates"]["LSTM"] > first["rates"]["LSTM"]
    assert bf3["rates"]["tanh RNN"] == pytest.approx(first["rates"]["tanh RNN"])   # b_f is the LSTM's
    # sigma_max(W) = 0.5 < 1: the Pascanu bound forces the tanh RNN to lose > log10 2 per step
    assert small["rates"]["tanh RNN"] < -0.30
    assert direct["rates"] == small["rates"]
    assert ["image/png", "text/plain"] in direct["outputs"]     # the figure is in the widget's output
