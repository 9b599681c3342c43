"""The modern cells in reports, and every cell's reference in the bibliography."""

from __future__ import annotations

import re
from pathlib import Path

import gradflow as gf

BIB = Path(gf.__file__).resolve().parent / "references.bib"


def test_every_cell_reference_is_a_bibtex_key():
    keys = set(re.findall(r"^@\w+\{([^,]+),", BIB.read_text(encoding="utf-8"), re.M))
    for name, cell in gf.CELLS.items():
        assert cell.reference in keys, (name, cell.reference)


def test_report_sections_for_modern_cells(tmp_path):
    out = gf.write_report(["lru", "slstm"], tmp_path / "rep", hidden=3, steps=6)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "(`lru`)" in md and "(`slstm`)" in md
    assert r"\rho_{t} \odot \cos\left(\omega_{t}\right)" in md          # the LRU's derived blocks
    assert r"\frac{\partial n_{t}}{\partial n_{t - 1}}" in md           # sLSTM's normaliser state
    assert "Orvieto" in md and "Beck" in md                              # cited from references.bib
    assert "contradicts" not in md
