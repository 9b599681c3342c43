"""What a reader sees of the mLSTM cells (matrix memory (C, n); h a read-out): slides that fit their
frames, a spectrum whose notes leave the curves legible, words that fit a three- or four-state memory.

Oracles: pdflatex's own log (no Overfull \\vbox or \\hbox on a beamer frame), matplotlib's rendered
geometry (the bounding box of a note against the display position of every drawn point), and the
cells' states as written in the symbolic core. TeX tests skip without pdflatex.
"""

from __future__ import annotations

import subprocess

import pytest
from conftest import need_program

from gradflow import get_cell, latex
from gradflow._views.document import display_row


def _beamer(frames: list[str]) -> str:
    return ("\\documentclass[aspectratio=169,11pt]{beamer}\n\\usepackage{amsmath}\n\\usepackage{amssymb}\n"
            "\\setbeamertemplate{navigation symbols}{}\n\\begin{document}\n" + "\n".join(frames)
            + "\n\\end{document}\n")


@pytest.mark.parametrize("name", ["mlstm-stabilised", "mlstm"])
def test_mlstm_jacobian_and_recurrence_frames_fit(tmp_path, name):
    """mlstm-stabilised: eight fraction-led lines ran 27 pt off a frame and ∂h_t/∂m_{t-1} (17 lines,
    one row) 128 pt off another: frames are filled by height, and a row taller than a frame continues
    on the next."""
    need_program("pdflatex")
    from gradflow._views.slides import _display_frames

    cell = get_cell(name)
    J = cell.jacobian()
    frames = _display_frames("J", [display_row(J.block_name(k), v) for k, v in J.blocks.items()])
    frames += _display_frames("step", [display_row(latex(k), v) for k, v in cell.recorded.definitions.items()])
    (tmp_path / "f.tex").write_text(_beamer(frames), encoding="utf-8")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "f.tex"], cwd=tmp_path,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stdout.decode("latin-1")[-1500:]
    log = (tmp_path / "f.log").read_text(encoding="latin-1")
    assert "Overfull \\vbox" not in log and "Overfull \\hbox" not in log
    body = "\n".join(frames)
    assert body.count("\\frac{\\partial h_{t}}{\\partial m_{t - 1}}") == (name == "mlstm-stabilised")
