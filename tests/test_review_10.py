"""Review 10: the matrix-free Frobenius estimate's standard error, and Mamba's/S4D's default input.

Oracles: the exact products of :func:`gradflow.products` (‖P_k‖_F by numpy), the spread of the
estimate over independent probe draws, and the sizes of the reference code (mamba_simple.py
d_state = 16; s4d.py d_state = 64 kept as 32 complex modes).
"""

from __future__ import annotations

import numpy as np
import pytest

import gradflow as gf
from gradflow._numeric.matrix_free import band_z, sketch_sweep


def _exact_fro(net, traj) -> np.ndarray:
    out = np.zeros(traj.steps)
    for pr in gf.products(net, traj):
        out[pr.k] = np.log10(np.linalg.norm(pr.P[0])) + pr.log10_scale[0]
    return out


@pytest.mark.parametrize("cell, m, probe", [("s4d", 2, "rademacher"), ("lru", 3, "rademacher"), ("s4d", 2, "gaussian")])
def test_se_covers_on_block_diagonal_products(cell, m, probe):
    """S4D and the LRU have 2 × 2 rotation-scaling blocks: P_k P_kᵀ is almost diagonal, where
    Rademacher probes' projection estimate varies ~√((r−1)/(s−1)) times more than the probe
    blocks' spread says (the Haar ratio c holds for Gaussian probes only). Over 100 probe draws
    (r = 16 in 8 blocks, 64 rows) the 99.9 % band (band_z(8) se) must miss ≤ 2 % of the draws
    at each k and the rms of (estimate − exact)/se stay below 1.6; with the Haar ratio it missed
    18–27 % (rms z 5.3–6.6). Gaussian probes keep the exact Haar ratio."""
    net = gf.network(cell, 32, m, seed=1)
    traj = net.unroll(gf.random_inputs(6, m, seed=2))
    want = _exact_fro(net, traj)
    N = net.state_size
    g = gf.loss_gradient(net, traj)
    z = []
    for s in range(100):
        c = sketch_sweep(net, traj, g, {"all": (slice(0, N), slice(0, N))}, probes=16, probe_blocks=8,
                         probe=probe, seed=100 + 7 * s)["all"]
        assert not c.fro_exact.any() and np.all(c.log10_norm_fro_se[0] > 0)
        z.append((c.log10_norm_fro[0] - want) / c.log10_norm_fro_se[0])
    z = np.array(z)
    assert np.all(np.mean(np.abs(z) > band_z(8), axis=0) <= 0.02), np.mean(np.abs(z) > band_z(8), axis=0)
    assert np.all(np.sqrt(np.mean(z ** 2, axis=0)) < 1.6), np.sqrt(np.mean(z ** 2, axis=0))


def test_report_records_each_cells_input_size(tmp_path):
    """Without --input each cell takes its own m: the LSTM m = n, Mamba m = n/N with N = 16 its
    ``d_state`` (mamba_simple.py), here n = 4 < 16 so N = 4 and m = 1. provenance.json's ``input``
    is then {cell: m} (an int only where all cells agree), ``inputs`` is {cell: m} always, the
    canonical command has no --input (so it reruns with the same defaults), and each flow's m in
    flows.json is the one recorded."""
    import json

    out = gf.write_report(["lstm", "mamba-zoh"], tmp_path / "r", hidden=4, steps=6)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["inputs"] == {"lstm": 4, "mamba-zoh": 1}
    assert prov["input"] == {"lstm": 4, "mamba-zoh": 1}
    assert "--input" not in prov["canonical_command"]
    flows = json.loads((out / "flows.json").read_text())["flows"]
    assert {name: f["input"] for name, f in flows.items()} == prov["inputs"]
    text = (out / "report.md").read_text()
    assert "$m = 4$ (`lstm`), $m = 1$ (`mamba-zoh`)" in text
    assert "$d = 1$ channel and $N = 4$ state entries each" in text and "Mamba's default is $N = 16$" in text


def test_spectral_band_collapses_to_the_norm_where_the_probes_span_the_rows():
    """32 probes on 16 rows (LSTM n = 8): Q is square orthogonal, so σ_max(QᵀP) is ‖P‖₂ itself and
    the band has no width; oracle: the SVD of the products, written here."""
    import numpy as np

    import gradflow as gf

    net = gf.network("lstm", 8, 3, seed=5)
    x = gf.random_inputs(20, 3, seed=1)
    f = gf.gradient_flow(net, x, mode="matrix-free", lyapunov=False)
    svd = np.full(20, np.nan)
    for pr in gf.products(net, net.unroll(x)):
        svd[pr.k] = np.asarray(pr.log10_scale)[0] + np.log10(np.linalg.svd(np.asarray(pr.P)[0], compute_uv=False)[0])
    band = f.sketch["full"]
    low, high = (np.asarray(getattr(band, key)).mean(axis=0) for key in ("log10_norm_2_low", "log10_norm_2_high"))
    np.testing.assert_allclose(low, svd, rtol=0, atol=1e-10)
    np.testing.assert_allclose(high, svd, rtol=0, atol=1e-10)
