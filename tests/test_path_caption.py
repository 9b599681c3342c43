"""The path figure's caption describes its panels in their order (an mLSTM panel may come first)."""

from __future__ import annotations

from gradflow import get_cell
from gradflow._views.evidence import _path_caption

LSTM_START = "The cell-state gradient split by path"
MEMORY_START = "The gradient split by path (first sequence). For `mlstm`"


def test_lstm_first():
    text = _path_caption([get_cell("lstm")], [get_cell("mlstm")])
    assert text.startswith(LSTM_START)
    assert text.index("For `mlstm`") > text.index("carousel")


def test_memory_panel_first():
    text = _path_caption([get_cell("lstm")], [get_cell("mlstm")], memory_first=True)
    assert text.startswith(MEMORY_START)
    assert text.index(LSTM_START) > text.index("For `mlstm`")
    assert text.rstrip().endswith("`figures/carousel.tex`.")


def test_memory_only():
    assert _path_caption([], [get_cell("mlstm")]).startswith(MEMORY_START)
    assert _path_caption([], [get_cell("mlstm")], memory_first=True).startswith(MEMORY_START)
