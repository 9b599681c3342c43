"""The leading Lyapunov exponents (an N × r QR per step) and the BLAS thread choice (issue 13).

Oracles: a full QR iteration written here in NumPy over Jacobians from PyTorch autograd of
``nn.LSTMCell``, and ``numpy.linalg.eigvals`` of linear recurrences h_t = W h_{t−1}, whose
Lyapunov exponents are log|eig W|. Never a value gradflow produced itself.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _torch_oracle import torch_lstm_jacobians
from sympy import MatMul

import gradflow as gf
from gradflow import Cell, GradflowError, Network, Weights
from gradflow._cli import main
from gradflow._numeric.flow import ONE_THREAD_BELOW, blas_threads  # the thread rule, tested on purpose

LINEAR = Cell("linear", "linear RNN", ("h",), lambda r: {"h": MatMul(r.W(), r.prev["h"])})


def linear_net(W) -> Network:
    W = np.asarray(W, dtype=np.float64)
    return Network(Weights(LINEAR, W.shape[0], 1, {"W": W}))


def qr_iteration(Js, Q):
    """Exponents of every column of Q under J_t Q_{t−1} = Q_t R_t (not sorted), NumPy only."""
    acc = np.zeros(Q.shape[1])
    for J in Js:
        Q, R = np.linalg.qr(J @ Q)
        acc += np.log(np.abs(np.diag(R)))
    return acc / len(Js)


@pytest.fixture(scope="module")
def lstm_case():
    n, m, T = 10, 3, 300
    net = gf.network("lstm", n, m, seed=4, forget_bias=1.0)
    x = gf.random_inputs(T, m, seed=7)
    return net, x, torch_lstm_jacobians(net, x)


@pytest.mark.parametrize("r", [1, 3, 8])
def test_leading_exponents_are_the_first_columns_of_the_full_iteration(lstm_case, r):
    """From the same start, the N × r iteration is the first r columns of the N × N one, and
    those columns carry the r largest exponents of the full spectrum."""
    net, x, Js = lstm_case
    N = net.state_size
    Qf, _ = np.linalg.qr(np.random.default_rng(11).standard_normal((N, N)))
    full = qr_iteration(Js, Qf)
    mine = gf.lyapunov_exponents(net, net.unroll(x), start=Qf[:, :r])[0]
    assert mine.shape == (r,) and np.all(np.diff(mine) <= 0)
    np.testing.assert_allclose(mine, np.sort(full[:r])[::-1], rtol=0, atol=1e-8)
    np.testing.assert_allclose(mine, np.sort(full)[::-1][:r], rtol=0, atol=1e-8)


def test_default_start_is_the_documented_one(lstm_case):
    """Default start: the orthonormal factor of default_rng(0).standard_normal((N, r))."""
    net, x, Js = lstm_case
    N, r = net.state_size, 8
    Q0 = np.linalg.qr(np.random.default_rng(0).standard_normal((N, r)))[0]
    Qf, _ = np.linalg.qr(np.hstack([Q0, np.random.default_rng(1).standard_normal((N, N - r))]))
    full = qr_iteration(Js, Qf)  # Qf's first r columns are ±Q0: the same exponents
    flow = gf.gradient_flow(net, x, bound=False)
    assert flow.lyapunov.shape == (r,)
    np.testing.assert_allclose(flow.lyapunov, np.sort(full)[::-1][:r], rtol=0, atol=1e-8)
    # "full": every exponent, from Q_0 = I
    want = np.sort(qr_iteration(Js, np.eye(N)))[::-1]
    np.testing.assert_allclose(gf.gradient_flow(net, x, lyapunov="full", bound=False).lyapunov, want,
                               rtol=0, atol=1e-8)


def richardson(net, r, T=200):
    """2 λ(2T) − λ(T): removes the c_i/T term of the finite-T exponents (the start is fixed)."""
    a = gf.gradient_flow(net, np.zeros((T, 1)), lyapunov=r, bound=False).lyapunov
    b = gf.gradient_flow(net, np.zeros((2 * T, 1)), lyapunov=r, bound=False).lyapunov
    return 2 * b - a


@pytest.mark.parametrize("r", [2, 5, True])
def test_leading_exponents_of_a_linear_rnn_are_log_abs_eigenvalues(r):
    """W = V Λ V⁻¹, 14 distinct real moduli, consecutive ratios ≤ 0.85: λ_i = log|Λ_i|."""
    N = 14
    lam = np.array([1.4, -1.1, 0.9, -0.75, 0.6, 0.5, -0.42, 0.35, 0.29, -0.24, 0.2, 0.16, -0.13, 0.1])
    V = np.random.default_rng(3).standard_normal((N, N)) + 2 * np.eye(N)
    W = V @ np.diag(lam) @ np.linalg.inv(V)
    exact = np.sort(np.log(np.abs(np.linalg.eigvals(W))))[::-1]
    k = 8 if r is True else r
    got = richardson(linear_net(W), r)
    assert got.shape == (k,)
    np.testing.assert_allclose(got, exact[:k], rtol=0, atol=1e-9)


def test_leading_exponents_of_a_triangular_w_need_a_generic_start():
    """span(e_1, e_2) is invariant under an upper-triangular W: a start of identity columns would
    give log|W_11|, log|W_22|; the generic start finds the two largest, log 1 and log 0.6."""
    diag = [0.25, -0.6, 0.45, 1.0, -0.05, 0.15, -0.35, 0.025, 0.01]
    W = np.triu(np.random.default_rng(5).standard_normal((9, 9)))
    np.fill_diagonal(W, diag)
    exact = np.sort(np.log(np.abs(np.linalg.eigvals(W))))[::-1]
    np.testing.assert_allclose(richardson(linear_net(W), 2), exact[:2], rtol=0, atol=1e-9)


def test_lyapunov_argument():
    net = gf.network("tanh-rnn", 5, 2, seed=0)
    x = gf.random_inputs(6, 2, batch=2)
    assert gf.gradient_flow(net, x, lyapunov=False).lyapunov is None
    assert gf.gradient_flow(net, x).lyapunov.shape == (5,)  # min(N, 8)
    assert gf.gradient_flow(net, x, lyapunov=50).lyapunov.shape == (5,)
    assert gf.gradient_flow(net, x, lyapunov=3).lyapunov.shape == (3,)
    for bad in (0, -1, 2.5, "all", None):
        with pytest.raises(GradflowError, match="lyapunov"):
            gf.gradient_flow(net, x, lyapunov=bad)
    traj = net.unroll(x)
    with pytest.raises(GradflowError, match="orthonormal"):
        gf.lyapunov_exponents(net, traj, start=np.ones((5, 2)))
    with pytest.raises(GradflowError, match="start"):
        gf.lyapunov_exponents(net, traj, start=np.eye(4))


def test_diagonal_path_gives_the_leading_exponents():
    """minGRU takes the O(T·n) path: its exponents are exact, the leading r are the first r."""
    net = gf.network("mingru", 12, 3, seed=1)
    x = gf.random_inputs(20, 3, batch=2, seed=2)
    full = gf.gradient_flow(net, x, lyapunov="full").lyapunov
    assert full.shape == (12,)
    np.testing.assert_array_equal(gf.gradient_flow(net, x).lyapunov, full[:8])
    np.testing.assert_array_equal(gf.gradient_flow(net, x, lyapunov=3).lyapunov, full[:3])


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_lyapunov_option(capsys):
    base = ("flow", "lstm", "--hidden", "6", "--input", "2", "--steps", "5", "--json")
    lengths = {}
    for extra in ((), ("--lyapunov", "3"), ("--lyapunov", "full"), ("--lyapunov", "99"), ("--no-lyapunov",)):
        code, out, err = _run(capsys, *base, *extra)
        assert code == 0 and err == ""
        lengths[extra] = len(json.loads(out)["lyapunov"])
    assert lengths == {(): 8, ("--lyapunov", "3"): 3, ("--lyapunov", "full"): 12, ("--lyapunov", "99"): 12,
                       ("--no-lyapunov",): 0}
    for extra in (("--lyapunov", "0"), ("--lyapunov", "all"), ("--lyapunov", "3", "--no-lyapunov")):
        code, out, err = _run(capsys, *base, *extra)
        assert code == 2 and out == "" and "--lyapunov" in err


def test_blas_threads_rule(monkeypatch):
    monkeypatch.delenv("GRADFLOW_THREADS", raising=False)
    assert blas_threads(None, ONE_THREAD_BELOW - 1) == 1
    assert blas_threads(None, ONE_THREAD_BELOW) is None  # the BLAS default
    assert blas_threads(3, 10) == 3
    monkeypatch.setenv("GRADFLOW_THREADS", "2")
    assert blas_threads(None, 10) == 2 and blas_threads(1, 10) == 1
    monkeypatch.setenv("GRADFLOW_THREADS", "two")
    with pytest.raises(GradflowError, match="GRADFLOW_THREADS"):
        blas_threads(None, 10)
    with pytest.raises(GradflowError, match="threads"):
        gf.gradient_flow(gf.network("tanh-rnn", 3, 1), np.zeros((2, 1)), threads=0)


def test_threads_limit_blas_during_the_run_only():
    """Inside the run BLAS has the chosen number of threads; afterwards the old number again."""
    code = (
        "import numpy as np, gradflow as gf\n"
        "from threadpoolctl import threadpool_info\n"
        "blas = lambda: [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
        "before = blas(); seen = []\n"
        "net = gf.network('tanh-rnn', 4, 1)\n"
        "gf.gradient_flow(net, np.zeros((3, 1)), progress=lambda d, t: seen.append(blas()))\n"
        "import json; print(json.dumps([before, seen[0], blas()]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"OPENBLAS_NUM_THREADS": "2", "PATH": "/usr/bin:/bin",
                              "PYTHONPATH": ":".join(p for p in sys.path if p)})
    assert json.loads(out.stdout) == [[2], [1], [2]]
