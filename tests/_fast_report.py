"""A stand-in for the report's build (the mathematics and figures take seconds): the same file
names, a few bytes each. The file-safety tests exercise writing, not content; they install it
with ``monkeypatch`` in-process, or run :func:`main` in a subprocess through this module."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def fake_build(stage: Path, cells, out, *, hidden, steps, seed, inputs, forget_bias, command, out_arg,
               columns=1, slides=False, sleep: float = 0.0, init=None, inits=None,
               figure_size: str = "two-column") -> None:
    (stage / "figures").mkdir()
    (stage / "figures" / "decay.png").write_bytes(b"\x89PNG fake " + str(seed).encode())
    (stage / "figures" / "decay.pdf").write_bytes(b"%PDF fake")
    if sleep:
        time.sleep(sleep)
    (stage / "report.md").write_text(f"# fake report, seed {seed}\n")
    (stage / "report.tex").write_text("\\documentclass{article}\\begin{document}x\\end{document}\n")
    (stage / "references.bib").write_text("")
    (stage / "flows.json").write_text("{}\n")
    prov = {"canonical_command": "gradflow report fake", "seed": seed,
            "figures": {"decay": ["figures/decay.pdf", "figures/decay.png"]}}
    (stage / "provenance.json").write_text(json.dumps(prov))


if __name__ == "__main__":  # python tests/_fast_report.py SLEEP gradflow-args...
    import functools

    import gradflow._views.report as R
    from gradflow._cli import main

    R._build = functools.partial(fake_build, sleep=float(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
