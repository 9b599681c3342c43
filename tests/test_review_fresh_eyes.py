"""Regression tests of a fresh-eyes review (new user, lecturer, attacker): one test per defect.

Each test failed before its fix: a traceback or a foreign exception instead of one GradflowError,
a sweep that started on a meaningless gain, a report sentence that said the opposite of its number,
PyTorch's advice to load an unreadable file with ``weights_only=False``, NumPy overflow warnings on
saturated units.
"""

from __future__ import annotations

import re
import types
import warnings

import numpy as np
import pytest

import gradflow as gf
from gradflow._cli import main
from gradflow._symbolic.cells import get_cell
from gradflow._views.bibtex import bibliography
from gradflow._views.document import Doc
from gradflow._views.report import introduction


@pytest.fixture(scope="module")
def lstm():
    return gf.network("lstm", hidden=3, input=2, seed=0)


@pytest.mark.parametrize("inputs", [None, "abc", 3.0, np.float64(2.0)])
def test_inputs_that_are_no_array_are_one_error(lstm, inputs):
    """They raised IndexError ('tuple index out of range') from the shape read in gradient_flow."""
    with pytest.raises(gf.GradflowError, match="inputs must be an array of shape"):
        gf.gradient_flow(lstm, inputs)


@pytest.mark.parametrize("net", ["lstm", None, {"weight_ih": 1}])
def test_gradient_flow_needs_a_network(net):
    """A cell name or None raised AttributeError ('str' object has no attribute 'state_size')."""
    with pytest.raises(gf.GradflowError, match="needs a Network"):
        gf.gradient_flow(net, np.zeros((3, 1, 2)))


@pytest.mark.parametrize("kwargs, match", [
    ({"gain": "2"}, "gain must be a finite number"),
    ({"gain": -1.0, "init": "orthogonal"}, "gain must be a non-negative"),  # was: 'high - low < 0'
    ({"gain": -1.0, "init": "glorot"}, "gain must be a non-negative"),
    ({"gain": -0.5}, "gain must be a non-negative"),  # the pytorch init accepted it silently
    ({"seed": -1}, "seed must be a non-negative integer"),  # was NumPy's ValueError
    ({"seed": 1.5}, "seed must be a non-negative integer"),  # was TypeError
    ({"forget_bias": "1"}, "forget bias must be a finite number"),  # was TypeError
])
def test_init_arguments_of_the_wrong_kind_are_one_error(kwargs, match):
    with pytest.raises(gf.GradflowError, match=match):
        gf.network("lstm", hidden=3, input=2, **kwargs)


@pytest.mark.parametrize("seed", [-1, "a", 0.5])
def test_random_inputs_seed_is_checked(seed):
    """seed=-1 was silently accepted (the RNG was seeded with seed + 1000003); 'a' raised TypeError."""
    with pytest.raises(gf.GradflowError, match="seed must be a non-negative integer"):
        gf.random_inputs(3, 2, seed=seed)


def test_a_negative_gain_is_refused_before_a_sweep_starts(tmp_path, capsys):
    """--gains -1 ran the sweep, created DIR and failed each point with 'ValueError: high - low < 0'."""
    with pytest.raises(gf.GradflowError, match="gains must be non-negative"):
        gf.grid_points(["tanh-rnn"], gains=[-1.0, 1.0], hidden=[2], steps=[3])
    out = tmp_path / "sweep"
    code = main(["sweep", "tanh-rnn", "-o", str(out), "--gains=-1,1", "--hidden", "2", "--steps", "3",
                 "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("gradflow: error: gains must be non-negative") and err.count("\n") == 1
    assert not out.exists()


def _intro_markdown(cells: list[str]) -> str:
    doc = Doc(bibliography())
    b = types.SimpleNamespace(doc=doc, cells=[get_cell(c) for c in cells], versions={"gradflow": "0"},
                              date="2026-01-01")
    introduction(b)  # type: ignore[arg-type]
    return doc.markdown()


def test_the_introduction_names_elman_only_when_an_elman_network_is_studied():
    """'The simple recurrent network studied here goes back to Elman (1990)' was printed in a
    report on lru, mamba-zoh, mingru and slstm, which studies no simple recurrent network."""
    modern = _intro_markdown(["lru", "mamba-zoh", "mingru", "slstm"])
    assert "studied here" not in modern and "Elman" not in modern
    assert "Elman (1990)" in _intro_markdown(["lstm", "relu-rnn"])


def _signed_rates(sentence: str, verb: str) -> list[float]:
    return [float(x) for x in re.findall(verb + r" \$(-?[0-9.]+)\$", sentence)]


def test_a_growing_cell_state_is_not_said_to_decay():
    """lstm-1997 at the report defaults: 'the c → c block decays at $0.0095$ per step' (it grows)."""
    from gradflow._views.evidence import path_rates_sentence  # the sentence, moved out of the section

    grows = path_rates_sentence("lstm-1997", 0.0095, 0.0, 0.0131, 0.0094)
    assert "decays at" not in grows
    assert "changes by $0.0095$" in grows and "positive: it grows" in grows
    vanishes = path_rates_sentence("lstm", -0.0894, -0.1328, -0.0878, -0.0897)
    assert _signed_rates(vanishes, "decays at") == [-0.0894]
    assert "carousel at $-0.1328$" in vanishes and "at $-0.0897$" in vanishes


def test_an_unreadable_pt_file_does_not_advise_weights_only_false(tmp_path, capsys):
    """PyTorch's first error line ('Re-running torch.load with weights_only set to False will
    likely succeed') was the whole reason given: advice to run a file's code."""
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(gf.GradflowError) as e:
        gf.network("lstm", weights=str(bad))
    msg = str(e.value)
    assert "not a readable PyTorch file" in msg
    assert "weights_only" not in msg and "Re-running" not in msg and "\n" not in msg


def test_saturated_tanh_units_give_a_zero_jacobian_without_overflow_warnings():
    """A pre-activation near float64's limit (here a = 1e308, finite): sech²(a) overflowed in
    −2|a| and NumPy warned on stderr. Oracle: PyTorch autograd of nn.RNNCell at the same weights
    and inputs is exactly 0 (tanh′ at a saturated unit underflows there too)."""
    torch = pytest.importorskip("torch")
    sd = {"weight_ih": np.eye(2), "weight_hh": 0.5 * np.eye(2), "bias_ih": np.zeros(2), "bias_hh": np.zeros(2)}
    net = gf.network("tanh-rnn", weights=sd)
    x = np.full((2, 1, 2), 1e308)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flow = gf.gradient_flow(net, x, lyapunov=False)
    assert np.all(np.isneginf(flow.full.mean()["log10_norm_2"]))
    cell = torch.nn.RNNCell(2, 2).double()
    cell.load_state_dict({k: torch.tensor(v) for k, v in sd.items()})
    xt = torch.tensor(x)

    def run(h0):
        h = h0[None]
        for t in range(2):
            h = cell(xt[t], h)
        return h[0]

    J = torch.autograd.functional.jacobian(run, torch.zeros(2, dtype=torch.float64))
    assert float(J.abs().max()) == 0.0


@pytest.mark.parametrize("argv, words", [
    (["report", "lstm", "-o", "out", "--figure-size", "huge"], "invalid choice: 'huge'"),
    (["report", "-o", "out"], "required: CELL"),
    (["derive", "lstm", "gru"], "unrecognized arguments: gru"),
    (["flow", "lstm", "--hidden"], "expected one argument"),
    (["nosuch"], "invalid choice: 'nosuch'"),
])
def test_argument_errors_are_one_line_like_every_other_bad_input(argv, words, capsys):
    """argparse printed a usage block and 'gradflow report: error: …', not one 'gradflow: error:' line."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith("gradflow: error: ") and words in err and err.count("\n") == 1


@pytest.mark.parametrize("call, match", [
    (lambda: gf.singular_values("lstm", np.zeros((3, 1, 2)), [0]), "singular_values needs a Network"),
    (lambda: gf.cell_state_paths(None, np.zeros((3, 1, 2))), "cell_state_paths needs a Network"),
    (lambda: gf.state_drift("lstm", np.zeros((3, 1, 2))), "state_drift needs a Network"),
    (lambda: gf.stacked_flow(None, np.zeros((3, 1, 2))), "stacked_flow needs a StackedNetwork"),
    (lambda: gf.plot_decay(None), "plot_decay takes a Flow or a list of Flows"),
    (lambda: gf.plot_phase_diagram(None), "plot_phase_diagram takes a PhaseGrid"),
    (lambda: gf.plot_depth_time(object()), "plot_depth_time takes a StackedFlow"),
])
def test_public_functions_refuse_the_wrong_object_with_one_error(call, match):
    """Each raised AttributeError or TypeError ('NoneType' object has no attribute 'unroll', …)."""
    with pytest.raises(gf.GradflowError, match=match):
        call()


def test_probes_that_do_not_split_into_the_probe_blocks_are_named_as_the_cli_option(capsys):
    """--probes 4 said 'probes (4) must be a multiple of probe_blocks (8)': an option the CLI lacks."""
    code = main(["flow", "lstm", "--hidden", "2", "--input", "2", "--steps", "2", "--mode", "matrix-free",
                 "--probes", "12"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gradflow: error: --probes must be a multiple of 8")
    assert "probe_blocks" not in err and err.count("\n") == 1


def _teaching_markdown(cells: list[str]) -> str:
    from gradflow._views.teaching import teach

    doc = Doc(bibliography())
    teach(doc, [get_cell(c) for c in cells])
    return doc.markdown()


def test_the_worked_cell_state_example_is_read_off_the_cell_it_names():
    """The worked example printed 'c_{t,i} = f_{t,i} c_{t-1,i} + i_{t,i} g_{t,i}, and the gates …
    and the candidate g_t … do not read c_{t-1}' for every forget-gate cell: sLSTM's candidate is
    z_t, and a peephole gate reads c_{t-1} (so its c → c block is not diag(f_t) at all)."""
    import sympy as sp

    md = _teaching_markdown(["slstm"])
    para = md[md.index("The same steps for the cell state of `slstm`"):]
    para = para[: para.index("($\\delta_{ij}$")]
    assert "z_{t}" in para and "g_{t}" not in para
    assert "f_{t,i}{\\thinspace} \\delta_{ij}" in para
    # oracle: sLSTM's cell update (Beck et al. 2024) written out at n = 2, differentiated by SymPy
    c_prev, h_prev = sp.Matrix(sp.symbols("c1 c2")), sp.Matrix(sp.symbols("h1 h2"))

    def gate(g):  # the pre-activation W_g h_{t-1} + (U_g x_t + b_g), the latter one symbol a
        return sp.Matrix([sp.Symbol(f"a{g}{k}") + sum(sp.Symbol(f"W{g}{k}{j}") * h_prev[j] for j in range(2))
                          for k in range(2)])

    f = gate("f").applyfunc(lambda a: 1 / (1 + sp.exp(-a)))
    i, z = gate("i").applyfunc(sp.exp), gate("z").applyfunc(sp.tanh)
    c = sp.Matrix([f[k] * c_prev[k] + i[k] * z[k] for k in range(2)])
    assert sp.simplify(c.jacobian(c_prev) - sp.diag(*f)) == sp.zeros(2, 2)
    # a peephole gate reads c_{t-1}: no such paragraph for it
    assert "The same steps for the cell state" not in _teaching_markdown(["peephole-lstm"])


def test_a_three_state_cell_is_not_called_a_pair(tmp_path):
    """sLSTM's state (h, c, n) was introduced as 'the pair s_t = (h_t, c_t, n_t)'."""
    from gradflow._views.derivation import derive_cell

    doc = Doc(bibliography())
    derive_cell(doc, get_cell("slstm"))
    md = doc.markdown()
    assert "The state is the triple $s_t = (h_{t}, c_{t}, n_{t})$" in md and "the pair" not in md


def test_a_curve_that_meets_its_bound_is_not_said_to_lie_below_it():
    """An IRNN (W = I, all units on) has log10 ‖∂h_T/∂h_k‖ = 0 = its bound at every k; the report
    said 'the measured curve lies below the bound at every k'."""
    from gradflow._views.evidence import bound_sentence

    on = bound_sentence(np.zeros(5), np.zeros(5))
    assert "below" not in on and "meets it" in on
    assert "lies below the bound at every $k$" in bound_sentence(np.array([-3.0, -2.0]), np.array([0.1, 0.05]))
    assert "ABOVE" in bound_sentence(np.array([0.5]), np.array([0.0]))


def _exploding_relu() -> gf.Network:
    """h_t = relu(1000 h_{t-1} + x_t + 1): every unit stays on, so ∂h_T/∂h_k = (1000 I)^{T-k}."""
    sd = {"weight_ih": np.ones((2, 1)), "weight_hh": 1000.0 * np.eye(2), "bias_ih": np.ones(2),
          "bias_hh": np.zeros(2)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the note that a state_dict does not record the nonlinearity
        return gf.network("relu-rnn", weights=sd)


def test_a_state_that_overflows_is_an_error_not_a_vanished_gradient(capsys):
    """At T = 120 the state passed 1.8e308 at step 104, then became NaN; ReLU′(NaN) = 0 made every
    product an exact 0, printed as −inf ('the gradient vanished') with exit 0, where the true
    log10 ‖∂h_T/∂h_k‖₂ is 3 (T − k), growing."""
    net, x = _exploding_relu(), np.ones((100, 1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # and no NumPy overflow warnings on the way
        flow = gf.gradient_flow(net, x, lyapunov=False)
        k = np.arange(100)
        np.testing.assert_allclose(flow.full.mean()["log10_norm_2"], 3.0 * (100 - k), rtol=0, atol=1e-9)
        with pytest.raises(gf.GradflowError, match="the state overflowed at step t = 1"):
            gf.gradient_flow(net, np.ones((120, 1, 1)))
        states = net.unroll(np.ones((120, 1, 1)), finite=False).states  # asked for: as computed
        assert not np.all(np.isfinite(np.asarray(states[-1])))


def _tanh_rnn(r):
    return {"h": gf.tanh(r.affine())}


@pytest.mark.parametrize("name", ["my_cell%$&#", "../escape", "a/b", "x{y}", "c\\d"])
def test_a_cell_name_that_would_name_files_badly_is_refused(name):
    """A cell's name becomes figure file names (slide-decay-NAME.pdf) and LaTeX: '../escape' and
    'my_cell%$&#' were accepted."""
    with pytest.raises(gf.GradflowError, match="a cell name is one word"):
        gf.make_cell(name, _tanh_rnn)


def test_a_state_of_the_wrong_size_is_one_error():
    """A definition returning h_t = x_t (m entries, not n) raised KeyError: h_{t} from jacobian()."""
    with pytest.raises(gf.GradflowError, match="state h must be a column of n entries"):
        gf.make_cell("h-is-x", lambda r: {"h": r.x})


def test_the_training_recorder_does_not_empty_a_file_it_did_not_write(tmp_path):
    """Recorder(path=…) opened the path with mode 'w' before anything else: a file given by
    mistake (notes, a checkpoint) was emptied; a missing folder raised FileNotFoundError."""
    torch = pytest.importorskip("torch")
    from gradflow.torch import Recorder

    rnn, x = torch.nn.LSTM(3, 4), torch.randn(4, 1, 3)
    notes = tmp_path / "notes.txt"
    notes.write_text("precious\n")
    with pytest.raises(gf.GradflowError, match="not a gradflow recording"):
        Recorder(rnn, every=1, inputs=x, path=notes)
    assert notes.read_text() == "precious\n"
    with pytest.raises(gf.GradflowError, match="does not exist"):
        Recorder(rnn, every=1, inputs=x, path=tmp_path / "missing" / "flow.jsonl")
    log = tmp_path / "flow.jsonl"  # its own recording is started afresh, as documented
    rec = Recorder(rnn, every=1, inputs=x, path=log)
    rec.step(0)
    Recorder(rnn, every=1, inputs=x, path=log)
    assert log.read_text() == ""


def test_carousel_on_a_cell_without_a_cell_state_is_refused(capsys):
    """`gradflow flow tanh-rnn … --carousel` printed the table without the carousel column, silently."""
    code = main(["flow", "tanh-rnn", "--hidden", "2", "--input", "2", "--steps", "2", "--carousel"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gradflow: error: --carousel applies to cells with a cell state c")


def test_a_stacked_mlstm_is_refused_as_a_single_one_is():
    """stacked_network('mlstm', …) raised NotImplementedError (no chain rule for its Kronecker product)."""
    with pytest.raises(gf.GradflowError, match="a stacked or bidirectional network"):
        gf.stacked_network("mlstm", hidden=2, input=3, layers=2)


def test_the_jacobian_caption_names_each_cells_own_cell_state_block():
    """Figure 4's caption said 'For an LSTM the c → c block is diagonal, diag(f_T)' for CIFG
    (whose block is diag(1 − i_T)), a peephole LSTM, and the 1997 cell (I)."""
    import sympy as sp

    from gradflow._views.bound_words import cc_block_words

    words = cc_block_words([get_cell("cifg"), get_cell("lstm-1997"), get_cell("lstm")])
    assert words.startswith("$\\operatorname{diag}\\left(1 - i_{T}\\right)$ for `cifg`; $I$ for `lstm-1997`")
    assert words.endswith("$\\operatorname{diag}\\left(f_{T}\\right)$ for `lstm`")
    # oracle: CIFG's update c_t = (1 − i_t) ⊙ c_{t−1} + i_t ⊙ g_t (Greff et al. 2017), at n = 2
    c_prev, i, g = (sp.Matrix(sp.symbols(f"{v}1 {v}2")) for v in "cig")
    c = sp.Matrix([(1 - i[k]) * c_prev[k] + i[k] * g[k] for k in range(2)])
    assert c.jacobian(c_prev) == sp.diag(1 - i[0], 1 - i[1])


def _cell_state_section(name: str) -> str:
    from gradflow._views.derivation import derive_cell

    doc = Doc(bibliography())
    derive_cell(doc, get_cell(name))
    md = doc.markdown()
    return md[md.index("#### The cell state"):md.index("#### The 1997")]


def test_a_peephole_or_cifg_cell_state_is_not_said_to_be_its_forget_gate_alone():
    """For peephole-lstm the report said 'no activation derivative φ′: each unit's gradient is
    multiplied by its own forget gate' under 'the carousel of its forget gates'; CIFG (1 − i_t,
    no b_f) was told to initialise its forget-gate bias at 1."""
    import sympy as sp

    # oracle: one peephole unit (Gers & Schmidhuber 2000), f = σ(a_f + w_f c_{t-1}), i = σ(a_i + w_i c_{t-1})
    c_prev, a_f, a_i, g, w_f, w_i = sp.symbols("c a_f a_i g w_f w_i")
    sig = lambda a: 1 / (1 + sp.exp(-a))  # noqa: E731
    f, i = sig(a_f + w_f * c_prev), sig(a_i + w_i * c_prev)
    dc = sp.diff(f * c_prev + i * g, c_prev)
    derived = f * (c_prev * (1 - f) * w_f + 1) + g * i * (1 - i) * w_i  # the block gradflow prints
    for point in ({c_prev: 0.7, a_f: 0.3, a_i: -0.2, g: 0.5, w_f: 0.9, w_i: -0.4},
                  {c_prev: -1.3, a_f: -0.8, a_i: 1.1, g: -0.6, w_f: 0.2, w_i: 0.7}):
        assert abs(float((dc - f).subs(point))) > 1e-3  # more than its forget gate: σ′ via the peepholes
        assert abs(float((dc - derived).subs(point))) < 1e-12
    for name in ("peephole-lstm", "cifg"):
        text = _cell_state_section(name)
        assert "its own forget gate" not in text and "no activation derivative" not in text
        assert "forget-gate bias" not in text and "carousel of its forget gates" not in text
        assert "its own entry of" in text
    lstm = _cell_state_section("lstm")
    assert "the carousel of its forget gates" in lstm and "its own forget gate" in lstm


def test_indrnn_is_not_said_to_have_a_state_in_its_unbounded_factor():
    """IndRNN's one-step Jacobian is diag(H(a_t) ⊙ u) (Li et al. 2018): |H| ≤ 1, so what the
    recurrence leaves open is the weight u, yet the report said 'A diagonal factor of this
    Jacobian involves the previous state or the candidate state' (and cited a GRU)."""
    import sympy as sp

    from gradflow._views.derivation import derive_cell

    # oracle: one IndRNN unit written out, h_t = relu(U x + u h_{t-1} + b): dh_t/dh_{t-1} = H(a) u
    h, x, U, u, b = sp.symbols("h x U u b", real=True)
    a = U * x + u * h + b
    d = sp.diff(sp.Max(a, 0), h)
    for point in ({h: 0.3, x: 1.0, U: 0.5, u: 2.0, b: 0.1}, {h: -0.3, x: 1.0, U: -0.5, u: 2.0, b: 0.1}):
        assert float(d.subs(point)) in (0.0, float(point[u]))  # H(a)·u: bounded by |u|, the weight
    doc = Doc(bibliography())
    derive_cell(doc, get_cell("indrnn"))
    md = doc.markdown()
    assert "involves the previous state or the candidate" not in md and "GRU" not in md
    # the derived bound (since the branch bounds): diag(H(a_t) ⊙ u), |H| ≤ 1, so (max_i |u_i|)^{t−k}
    assert "\\operatorname{diag}\\left(H\\left(a_{t}\\right) \\odot u\\right)" in md
    assert "\\left(\\max_i |u_i|\\right)^{t - k}" in md


@pytest.mark.parametrize("argv, words", [
    (["tanh-rnn", "--gains", "-1"], "gain"),
    (["tanh-rnn", "--init", "mamba"], "init mamba is for mamba-zoh or mamba-euler"),
])
def test_a_sweep_that_cannot_run_a_cell_is_refused_before_it_starts(tmp_path, capsys, argv, words):
    """Both ran the sweep, wrote DIR (sweep.json, points/) and failed every point one by one."""
    out = tmp_path / "s"
    code = main(["sweep", *argv, "-o", str(out), "--hidden", "4", "--steps", "3", "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gradflow: error: ") and words in err and err.count("\n") == 1
    assert not out.exists()
