"""The state-space cells end to end: reference parameter counts, reference inits, the CLI commands.

Oracles: the reference modules' ``__init__`` tensor shapes re-built here from the sources (file and
commit cited; mamba_ssm is GPU-only, none of the packages is installed); the one-step Jacobian of S6
written out in NumPy here (∂h_T/∂h_0 = diag(∏_t exp(−Δ_t ⊙ exp(A_log))), Δ_t = softplus(U_Δ x_t + b_Δ)); the reference
init's properties as the source states them (A = −(k + 1), softplus(b_Δ) ∈ [dt_min, dt_max], …).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import gradflow as gf
from gradflow._cli import main

SSM = ("mamba-zoh", "mamba-euler", "s4d", "rg-lru")


def _cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------------------------
# parameter counts, reference convention, against the modules' shapes re-built in torch
# --------------------------------------------------------------------------------------------
def _mamba_scan(d_model: int, d_state: int):
    """state-spaces/mamba mamba_ssm/modules/mamba_simple.py (commit 000b310f), Mamba.__init__:
    d_inner = 2 d_model, dt_rank = ceil(d_model/16), x_proj Linear(d_inner, dt_rank + 2 d_state, no bias),
    dt_proj Linear(dt_rank, d_inner), A_log (d_inner, d_state), D (d_inner)."""
    d_inner, R = 2 * d_model, math.ceil(d_model / 16)
    x_proj_weight = np.zeros((R + 2 * d_state, d_inner))           # nn.Linear(in, out): weight (out, in)
    dt_proj = [np.zeros((d_inner, R)), np.zeros(d_inner)]          # weight and bias
    A_log = np.zeros((d_inner, d_state))
    # the scan's Δ and B rows of x_proj (its C rows and D are the read-out)
    scan = A_log.size + x_proj_weight[:R + d_state].size + sum(p.size for p in dt_proj)
    return d_inner, scan


def _s4d_kernel(H: int, d_state: int):
    """state-spaces/s4 models/s4/s4d.py (commit 2ed46fcf), S4DKernel.__init__: log_dt (H),
    C view_as_real (H, N/2, 2), log_A_real and A_imag (H, N/2); B is not a tensor (1)."""
    log_dt, log_A_real, A_imag = np.zeros(H), np.zeros((H, d_state // 2)), np.zeros((H, d_state // 2))
    return log_dt.size + log_A_real.size + A_imag.size


def _rglru(width: int, heads: int):
    """google-deepmind/recurrentgemma recurrentgemma/torch/layers.py (commit 2a3dde4b), RGLRU.__init__:
    a_param (width); input_gate, a_gate BlockDiagonalLinear: w (heads, width/heads, width/heads),
    b (heads, width/heads)."""
    bw = width // heads
    params = [np.zeros(width)]
    for _ in range(2):
        params += [np.zeros((heads, bw, bw)), np.zeros((heads, bw))]
    return sum(p.size for p in params)


@pytest.mark.parametrize("d_model, d_state", [(24, 4), (768, 16), (40, 3)])
def test_mamba_reference_count_is_the_modules_scan(d_model, d_state):
    d, want = _mamba_scan(d_model, d_state)
    for name in ("mamba-zoh", "mamba-euler"):
        c = gf.count_params(name, d * d_state, d, convention="reference")
        assert c.total == want
        assert c.total < gf.count_params(name, d * d_state, d).total  # the per-unit form is larger
    # Mamba-130m's scan by hand: A_log 1536·16, x_proj Δ and B rows (48 + 16)·1536, dt_proj 48·1536 + 1536
    assert gf.count_params("mamba-zoh", 1536 * 16, 1536, convention="reference").total == \
        1536 * 16 + (48 + 16) * 1536 + 48 * 1536 + 1536


@pytest.mark.parametrize("H, d_state", [(8, 64), (3, 2)])
def test_s4d_reference_count_is_the_kernels(H, d_state):
    N = d_state // 2  # gradflow's N: complex modes per channel
    assert gf.count_params("s4d", H * N, H, convention="reference").total == _s4d_kernel(H, d_state)


@pytest.mark.parametrize("width, heads", [(2560, 10), (12, 1), (12, 4)])
def test_rglru_reference_count_is_the_modules(width, heads):
    c = gf.count_params("rg-lru", width, width, convention="reference", heads=heads)
    assert c.total == _rglru(width, heads)
    assert c.recurrent_weights + c.input_weights + c.biases == c.total


def test_params_cli_reference(capsys):
    code, out, _ = _cli(capsys, "params", "s4d", "--hidden", "32", "--input", "4", "--convention", "reference",
                        "--json")
    rec = json.loads(out)
    assert code == 0 and rec["total"] == 4 + 2 * 4 * 8 and rec["parts"]["log_dt (d)"] == 4
    assert "C (d x N x 2)" in rec["not_counted"]
    code, out, _ = _cli(capsys, "params", "rg-lru", "--hidden", "12", "--input", "12", "--convention",
                        "reference", "--heads", "4")
    assert code == 0 and "a_gate.w (H x d/H x d/H)" in out and f"{12 + 2 * (36 + 12)}" in out


@pytest.mark.parametrize("argv", [
    ["lstm", "--hidden", "4", "--input", "4", "--convention", "reference"],          # not an SSM cell
    ["mamba-zoh", "--hidden", "9", "--input", "4", "--convention", "reference"],     # 9 ≠ 4·N
    ["rg-lru", "--hidden", "8", "--input", "4", "--convention", "reference"],        # width: n = m
    ["rg-lru", "--hidden", "8", "--input", "8", "--convention", "reference", "--heads", "3"],
    ["mamba-zoh", "--hidden", "8", "--input", "4", "--heads", "2"],                  # heads: rg-lru reference only
    ["s4d", "--hidden", "8", "--input", "4", "--convention", "reference", "--layers", "2"],
])
def test_params_cli_reference_bad_input(capsys, argv):
    code, out, err = _cli(capsys, "params", *argv)
    assert code == 2 and err.startswith("gradflow: error: ") and err.count("\n") == 1 and not out


# --------------------------------------------------------------------------------------------
# reference inits
# --------------------------------------------------------------------------------------------
def test_reference_inits_as_the_sources_draw_them():
    d, N = 4, 3
    w = gf.init_weights("mamba-euler", d * N, d, scheme="mamba", seed=5)
    a = {k: np.asarray(v) for k, v in w.arrays.items()}
    assert np.allclose(np.exp(a[r"A_{\log}"]).reshape(d, N), np.arange(1, N + 1))      # A = −(k + 1)
    dt = np.log1p(np.exp(a[r"b_{\Delta}"])).reshape(d, N)
    assert np.all(dt == dt[:, :1]) and dt.min() >= 1e-3 * (1 - 1e-12) and dt.max() <= 0.1 * (1 + 1e-12)
    assert np.all(a["U_{B}"].reshape(d, N, d) == a["U_{B}"][:N][None])                 # B per state index
    assert np.linalg.matrix_rank(a[r"U_{\Delta}"]) == 1                                   # R = ⌈4/32⌉ = 1
    assert np.array_equal(a["U_{u}"], np.repeat(np.eye(d), N, axis=0))
    s = {k: np.asarray(v) for k, v in gf.init_weights("s4d", d * N, d, scheme="s4d-lin").arrays.items()}
    assert np.allclose(np.exp(s[r"A_{re,\log}"]), 0.5) and np.allclose(s["A_{im}"], np.tile(np.pi * np.arange(N), d))
    r = {k: np.asarray(v) for k, v in gf.init_weights("rg-lru", 6, 6, scheme="rg-lru").arrays.items()}
    sig = 1 / (1 + np.exp(-r[r"\Lambda"]))
    assert sig.min() >= 0.9 and sig.max() <= 0.999
    assert np.array_equal(r["U_{u}"], np.eye(6)) and not r["b_{a}"].any() and not r["b_{x}"].any()


def test_flow_cli_mamba_init_matches_the_product_written_out(capsys):
    d, N, T, seed = 3, 2, 7, 4
    code, out, _ = _cli(capsys, "flow", "mamba-zoh", "--hidden", str(d * N), "--input", str(d), "--steps",
                        str(T), "--seed", str(seed), "--no-lyapunov", "--json")
    assert code == 0
    curve = json.loads(out)["curve"]
    w = {k: np.asarray(v) for k, v in gf.init_weights("mamba-zoh", d * N, d, scheme="mamba", seed=seed).arrays.items()}
    x = gf.random_inputs(T, d, seed=seed)[:, 0]
    log_a = np.zeros(d * N)
    for t in range(T):  # ā_t = exp(−Δ_t ⊙ exp(A_log)), Δ_t = softplus(U_Δ x_t + b_Δ)
        delta = np.logaddexp(0.0, w[r"U_{\Delta}"] @ x[t] + w[r"b_{\Delta}"])
        log_a += -delta * np.exp(w[r"A_{\log}"])
    assert abs(curve[0]["log10_norm_2"] - log_a.max() / math.log(10)) < 1e-12
    code, out, _ = _cli(capsys, "flow", "mamba-zoh", "--hidden", "6", "--input", "3", "--steps", "3")
    assert code == 0 and ("init: mamba (d = 3 channels, N = 2 state entries each; the reference code's "
                          "default is N = 16)") in out


@pytest.mark.parametrize("argv, words", [
    (["lstm", "--hidden", "6", "--input", "3", "--init", "mamba"], "init mamba is for mamba-zoh or mamba-euler"),
    (["mamba-zoh", "--hidden", "7", "--input", "3"], "not channels × state size"),
    (["rg-lru", "--hidden", "6", "--input", "3"], "input size must equal the hidden size"),
    (["s4d", "--hidden", "6", "--input", "3", "--init", "s4d-real", "--gain", "2"], "gain does not apply"),
    (["s4d", "--hidden", "6", "--input", "3", "--init", "s4d"], "unknown init scheme"),
])
def test_flow_cli_init_bad_input(capsys, argv, words):
    code, out, err = _cli(capsys, "flow", *argv, "--steps", "3")
    assert code == 2 and err.startswith("gradflow: error: ") and words in err and not out


# --------------------------------------------------------------------------------------------
# derive and report
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SSM)
def test_derive_cli(capsys, name):
    code, out, _ = _cli(capsys, "derive", name)
    assert code == 0 and out.count("\n") > 4
    # S6 and the RG-LRU: a diagonal state Jacobian; S4D: 2 × 2 rotation–scaling blocks per mode
    assert "∂h_t/∂h_{t-1} = diag(" in out
    assert ("∂h_t/∂q_{t-1} = -diag(lambda^{im}_t)" in out) == (name == "s4d")


def test_report_cli_uses_the_reference_inits(capsys, tmp_path, monkeypatch):
    import gradflow._views.report as R

    seen = {}
    monkeypatch.setattr(R, "_build", lambda stage, cells, out, **kw: seen.update(kw) or (_ for _ in ()).throw(
        gf.GradflowError("stop")))
    code, _, err = _cli(capsys, "report", *SSM, "lstm", "-o", str(tmp_path / "r"), "--hidden", "4")
    assert code == 2 and "stop" in err
    assert seen["inits"] == {"mamba-zoh": "mamba", "mamba-euler": "mamba", "s4d": "s4d-lin", "rg-lru": "rg-lru",
                             "lstm": "pytorch"}
    code, _, err = _cli(capsys, "report", "lstm", "-o", str(tmp_path / "q"), "--init", "rg-lru")
    assert code == 2 and "init rg-lru is for rg-lru; got lstm" in err and not (tmp_path / "q").exists()


def test_report_measures_with_the_reference_init():
    from gradflow._views.evidence import measure

    runs = measure([gf.get_cell("s4d")], hidden=4, input=2, steps=6, seed=1, inits={"s4d": "s4d-real"})
    run = runs["s4d"]
    want = gf.init_weights("s4d", 4, 2, scheme="s4d-real", seed=1)
    assert run.init == "s4d-real"
    assert all(np.array_equal(np.asarray(run.net.weights.arrays[k]), np.asarray(v)) for k, v in want.arrays.items())
    # S4D-Real, fixed Δ per channel: |λ_k| = exp(−Δ_c (k + 1)); ‖∂s_T/∂s_0‖₂ = max over modes of |λ|^T
    dt = np.exp(np.asarray(want.arrays[r"\log\Delta"]))
    k1 = np.exp(np.asarray(want.arrays[r"A_{re,\log}"]))
    assert abs(run.flow.full.mean().log10_norm_2[0] - (-(dt * k1) * 6).max() / math.log(10)) < 1e-12


@pytest.mark.parametrize("name, words", [("mamba-zoh", "depend on the input $x_t$ and the parameters"),
                                         ("s4d", "depend on the parameters only: the same at every step")])
def test_derivation_says_what_the_factors_read(name, words):
    """No 'candidate state' (S6 has none) and no 'cell state' (S4D's (h, q) are Re and Im)."""
    from gradflow._views.bibtex import bibliography_text, parse_bibtex
    from gradflow._views.derivation import derive_cell
    from gradflow._views.document import Doc

    doc = Doc(parse_bibtex(bibliography_text()))
    derive_cell(doc, gf.get_cell(name))
    md = doc.markdown()
    assert words in md and "candidate state" not in md and "cell state" not in md
    # what the sentence says, on numbers: J_t from two different previous states is the same
    net = gf.network(name, 4, 2, init="mamba" if name == "mamba-zoh" else "s4d-lin", seed=1)
    x = gf.random_inputs(2, 2, seed=2)
    states = gf.get_cell(name).states
    J = [np.asarray(net.step_jacobian(net.unroll(x, initial={s: s0[4 * i:4 * i + 4] for i, s in enumerate(states)}),
                                      2))[0]
         for s0 in np.random.default_rng(0).standard_normal((2, net.state_size))]
    assert np.array_equal(J[0], J[1]) and np.abs(J[0]).max() < 1
