"""Review 11 of the merged ``guards`` branch: each test failed before its fix.

Oracles: tracemalloc's measured peak (NumPy reports its buffers to it) against the size guard's
budget; the CLI's exit status and stderr; values written out in the test.
"""

from __future__ import annotations

import re
import tracemalloc

import pytest

from gradflow import GradflowError, gradient_flow, network, random_inputs
from gradflow._cli import main


@pytest.mark.parametrize("value", ["inf", "1e400", "-inf", "0.25"])
def test_memory_limit_that_is_not_a_size_is_one_error(monkeypatch, capsys, value):
    # "inf" raised OverflowError (int(inf)) from network() and a traceback from the CLI;
    # "0.25" made 0 bytes available, refusing every run with "0 B is available"
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", value)
    with pytest.raises(GradflowError, match="GRADFLOW_MEMORY_LIMIT must be a size in bytes"):
        network("tanh-rnn", 4, 2)
    assert main(["flow", "tanh-rnn", "--hidden", "4", "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradflow: error: GRADFLOW_MEMORY_LIMIT must be") and err.count("\n") == 1


def test_the_advised_sizes_fit_in_what_the_guard_allows(monkeypatch):
    """The refusal names the largest n and batch that fit; run each at the same limit: the
    measured peak must stay within the run's share (80 %). It did not: the exact chain's terms,
    precomputed for all steps (~36·T·B·n floats for an LSTM), were not in the estimate, and the
    advised n = 130 of an LSTM (T = 200, B = 8, 60 MiB) peaked at 75 MiB, above the 48 MiB share."""
    m, T, B, limit = 4, 200, 8, 24 << 20
    gradient_flow(network("lstm", 3, m), random_inputs(3, m))  # derive the cell's kernels first
    x = random_inputs(T, m, batch=B)
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", str(limit))
    with pytest.raises(GradflowError) as e:
        gradient_flow(network("lstm", 128, m), x, mode="exact", lyapunov=False)
    msg = str(e.value)
    n_fit = int(re.search(r"largest hidden size that fits is (\d+)", msg).group(1))
    b_fit = int(re.search(r"a batch of at most (\d+) fits", msg).group(1))
    assert 8 <= n_fit < 128 and 1 <= b_fit < B
    for n, b in ((n_fit, B), (128, b_fit)):
        net = network("lstm", n, m)
        tracemalloc.start()
        try:
            gradient_flow(net, x[:, :b], mode="exact", lyapunov=False)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= 0.8 * limit, (n, b, peak / 2**20)


@pytest.mark.parametrize("name", ["tanh-rnn", "lstm", "gru", "slstm", "lru", "s4d"])
def test_the_estimate_counts_the_terms_the_chain_precomputes(name):
    # the estimate reads the vector terms off the symbolic Jacobian; the chain's operator derives
    # them for its precomputation: they must agree, or the estimate misses (or invents) T·B·n arrays
    from gradflow._numeric.matrix_free import JacobianOperator
    from gradflow._numeric.size_guard import _vector_terms

    net = network(name, 8, 3)
    assert _vector_terms(net.cell) == sum(t.vfn is not None for t in JacobianOperator(net, False).terms)


def test_a_torchscript_head_can_be_trusted_from_python(tmp_path):
    """gradient_flow(head=PATH) and stacked_flow(head=PATH) of a TorchScript archive were refused
    with 'pass trust_torchscript=True (load_weights, network, stacked_network)', none of which
    reads a head: from Python there was no way in. Oracle: the same head read from a state_dict
    (torch.save), and the cross-entropy gradient written out, ∂L/∂h_T = Vᵀ(softmax(V h_T + c) − e_y)."""
    import warnings

    import numpy as np

    torch = pytest.importorskip("torch")
    from gradflow import stacked_flow, stacked_network

    torch.manual_seed(0)
    head = torch.nn.Linear(3, 4).double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(head).save(str(tmp_path / "head.pt"))
    torch.save(head.state_dict(), tmp_path / "head_sd.pt")
    net, x, y = network("tanh-rnn", 3, 2), random_inputs(5, 2), np.array([2])
    with pytest.raises(GradflowError, match="gradient_flow, stacked_flow for a head file"):
        gradient_flow(net, x, loss="last", head=str(tmp_path / "head.pt"), targets=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = gradient_flow(net, x, loss="last", head=str(tmp_path / "head.pt"), targets=y,
                            trust_torchscript=True, lyapunov=False)
        ref = gradient_flow(net, x, loss="last", head=str(tmp_path / "head_sd.pt"), targets=y, lyapunov=False)
    hT = net.unroll(x).states[-1][0]
    V, c = head.weight.detach().numpy(), head.bias.detach().numpy()
    p = np.exp(V @ hT + c) / np.exp(V @ hT + c).sum()
    W = net.weights.arrays["W"]                        # h_T = tanh(W h_{T-1} + U x_T + b)
    want = np.log10(np.linalg.norm(W.T @ ((1 - hT ** 2) * (V.T @ (p - np.eye(4)[2])))))  # k = T - 1
    assert got.full.mean()["log10_grad_norm"][-1] == pytest.approx(want, abs=1e-12)
    np.testing.assert_array_equal(got.full.mean()["log10_grad_norm"], ref.full.mean()["log10_grad_norm"])
    stack = stacked_network("tanh-rnn", 3, 2, layers=2)
    with pytest.raises(GradflowError, match="TorchScript"):
        stacked_flow(stack, x, loss="last", head=str(tmp_path / "head.pt"), targets=y, lyapunov=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sf = stacked_flow(stack, x, loss="last", head=str(tmp_path / "head.pt"), targets=y,
                          lyapunov=False, trust_torchscript=True)
    assert sf.loss == "last"


def test_indrnn_bound_at_n_4096_holds_no_n_by_n_matrix():
    """IndRNN's state Jacobian is diagonal, so its run takes the O(T·n) path the size guard counts
    without any N × N buffer; but its Pascanu bound (on by default) built diag(u) as a dense
    n × n matrix and took its SVD: 128 MiB and ~20 s at n = 4096 (7 GiB at n = 30000, past the
    guard). Oracle: ‖diag(u)‖₂ = max_i |u_i|, and at n = 16 the SVD of the dense diag(u)."""
    import numpy as np

    T = 20
    small = network("indrnn", 16, 3)
    u = small.weights.arrays["u"]
    got = gradient_flow(small, random_inputs(T, 3), lyapunov=False).bound
    np.testing.assert_allclose(got, (T - np.arange(T)) * np.log10(np.linalg.norm(np.diag(u), 2)), rtol=1e-13)
    net = network("indrnn", 4096, 3)
    x = random_inputs(T, 3, batch=2)
    gradient_flow(network("indrnn", 8, 3), x, lyapunov=False)  # derive the cell's kernels first
    tracemalloc.start()
    try:
        flow = gradient_flow(net, x, lyapunov=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    u = net.weights.arrays["u"]
    np.testing.assert_allclose(flow.bound, (T - np.arange(T)) * np.log10(np.abs(u).max()), rtol=1e-13)
    assert peak < 16 << 20, peak / 2**20             # a 4096 × 4096 float64 matrix is 128 MiB


def test_an_archive_torch_would_hand_to_torch_jit_load_is_named_as_one(tmp_path, monkeypatch, capsys):
    """torch.load sends any zip with a constants.pkl to torch.jit.load (torch's own test); gradflow
    asked for constants.pkl *and* code/, so such an archive without code/ reached torch.load and
    read 'not a readable PyTorch file (truncated or corrupt: RuntimeError)'. Now it is the
    TorchScript refusal, torch.jit.load never called; trusted, the reason is a non-empty line."""
    import pickle
    import zipfile

    torch = pytest.importorskip("torch")
    torch.save(torch.nn.RNN(2, 3).state_dict(), tmp_path / "sd.pt")
    with zipfile.ZipFile(tmp_path / "sd.pt") as src, zipfile.ZipFile(tmp_path / "odd.pt", "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr(src.namelist()[0].split("/")[0] + "/constants.pkl", pickle.dumps(()))
    path = str(tmp_path / "odd.pt")

    def refuse(*args, **kwargs):
        raise AssertionError("torch.jit.load was called on an untrusted archive")

    with monkeypatch.context() as m:
        m.setattr(torch.jit, "load", refuse)
        with pytest.raises(GradflowError, match="is a TorchScript archive, which gradflow does not load"):
            network("tanh-rnn", weights=path)
        assert main(["flow", "tanh-rnn", "--weights", path, "--steps", "3"]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(GradflowError, match=r"TorchScript archive that cannot be loaded: \S"):
        network("tanh-rnn", weights=path, trust_torchscript=True)


def test_a_stack_the_guard_lets_through_fits(monkeypatch):
    """stacked_flow's guard estimated a 2-layer LSTM stack (n = 32, T = 300, B = 4) at 10.5 MiB;
    it peaks at 16.3 MiB (tracemalloc; n = 8, T = 1000: 4.0 against 10.1; here n = 16, T = 150,
    B = 2): the layers' and the whole stack's scaled adjoints, (T + 1, B, N) each, and every
    layer's per-step arrays were not counted. Given a share 1 % below the measured peak, the guard must refuse."""
    from gradflow import stacked_flow, stacked_network
    from gradflow._numeric.size_guard import MEMORY_SHARE

    T, B = 150, 2
    stacked_flow(stacked_network("lstm", 4, 4, layers=2), random_inputs(3, 4))  # kernels first
    net, x = stacked_network("lstm", 16, 4, layers=2), random_inputs(T, 4, batch=B)
    tracemalloc.start()
    try:
        stacked_flow(net, x, lyapunov=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", str(int(0.99 * peak / MEMORY_SHARE)))
    with pytest.raises(GradflowError, match="stacked_flow: .* needs about"):
        stacked_flow(net, x, lyapunov=False)


def test_the_diagonal_path_is_not_refused_for_a_trajectory_it_never_keeps(monkeypatch):
    """IndRNN's diagonal path runs forward twice and keeps O(B·n) whatever T (diagonal.py), but the
    guard counted the whole trajectory and (T + 1)·B·N·8 sweep entries: at n = 256, T = 500 it
    asked for ~12 MiB and refused a run that peaks at ~0.1 MiB (n = 1024, T = 2000: 348 MiB
    against 0.5 MiB). At a 4 MiB limit the run must go, and fit (tracemalloc)."""
    T, limit = 500, 4 << 20
    gradient_flow(network("indrnn", 4, 3), random_inputs(3, 3))  # derive the cell's kernels first
    net, x = network("indrnn", 256, 3), random_inputs(T, 3)
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", str(limit))
    tracemalloc.start()
    try:
        flow = gradient_flow(net, x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert flow.full.log10_norm_2.shape == (1, T) and peak <= 0.8 * limit


def test_cli_counts_no_trajectory_for_the_diagonal_path(monkeypatch, capsys):
    """`gradflow flow indrnn` (a diagonal Jacobian, loss sum: two forward passes, O(B·n) memory)
    was refused from the CLI for a trajectory it never keeps, as the API was before."""
    from gradflow import get_cell
    from gradflow._numeric import size_guard as sg


    cell = get_cell("indrnn")
    kept = sg.flow_bytes(cell, 256, 256, 2000, 1, 8, structured=True)  # with the trajectory
    lean = sg.flow_bytes(cell, 256, 256, 2000, 1, 8, structured=True, streaming=True)
    limit = int((lean + kept) / 2 / sg.MEMORY_SHARE)
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", str(limit))
    assert main(["flow", "indrnn", "--hidden", "256", "--steps", "2000", "--json"]) == 0
    assert '"cell": "indrnn"' in capsys.readouterr().out
    with pytest.raises(GradflowError):  # what the CLI counted before: the trajectory, refused here
        sg.check_flow_size(cell, 256, 256, 2000, 1, 8, structured=True)
