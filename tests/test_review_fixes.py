"""Regression tests of the review of ``gradflow sweep`` and the real losses (one test per defect)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import gradflow as gf
from gradflow._cli import main
from gradflow._numeric import sweep_run
from gradflow._views import sweep_plots


def _fake_row(point: gf.GridPoint) -> dict:
    """A result row with a rate written out here (−0.1 · gain): no run, the files are what is tested."""
    return {"key": point.key, "cell": point.cell, "gain": point.gain, "forget_bias": point.forget_bias,
            "hidden": point.hidden, "input": point.input, "steps": point.steps, "seed": point.seed,
            "batch": point.batch, "init": point.init, "rate": -0.1 * point.gain, "rate_fro": -0.1,
            "rate_grad": -0.1, "log10_norm_k0": -1.0, "rate_cell_state": None, "seconds": 0.0}


def test_one_step_is_refused_before_anything_runs(tmp_path, capsys):
    """T = 1 has no decay rate: it used to run every point, save them, then fail at the figure."""
    with pytest.raises(gf.GradflowError, match="steps must be at least 2"):
        gf.grid_points(["tanh-rnn"], steps=[1, 5])
    code = main(["sweep", "tanh-rnn", "-o", str(tmp_path / "s"), "--hidden", "2", "--steps", "1",
                 "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "steps must be at least 2" in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_a_resumed_sweep_rewrites_the_csv_an_earlier_run_wrote(tmp_path):
    """Run 1 with csv, run 2 (more seeds) without: results.csv used to keep run 1's rows only."""
    out = tmp_path / "s"
    first = gf.grid_points(["tanh-rnn"], gains=[0.5, 1.0], hidden=[2], steps=[3], seeds=[0])
    gf.run_sweep(first, out, workers=0, compute=_fake_row, csv=True, parquet=False)
    more = gf.grid_points(["tanh-rnn"], gains=[0.5, 1.0], hidden=[2], steps=[3], seeds=[0, 1])
    result = gf.run_sweep(more, out, workers=0, compute=_fake_row, csv=False, parquet=False)
    assert (result.resumed, result.computed) == (2, 2)
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["key"] for r in rows) == sorted(p.key for p in more)
    assert sorted(float(r["rate"]) for r in rows) == [-0.1, -0.1, -0.05, -0.05]


def test_no_figures_removes_figures_of_an_earlier_grid(tmp_path, capsys, monkeypatch):
    pytest.importorskip("pyarrow")
    monkeypatch.setattr(sweep_run, "measure_point", _fake_row)
    out = tmp_path / "s"
    args = ["sweep", "tanh-rnn", "-o", str(out), "--hidden", "2", "--steps", "3", "--workers", "0",
            "--quiet", "--no-figures"]
    assert main(args) == 0
    for name in ("decay_rates.png", "phase_diagram.pdf"):  # as an earlier run with figures left them
        (out / name).write_bytes(b"old")
    assert main([*args, "--seeds", "0,1"]) == 0
    said = capsys.readouterr().out
    assert "removed the earlier figures" in said
    assert not (out / "decay_rates.png").exists() and not (out / "phase_diagram.pdf").exists()
    assert (out / "results.parquet").is_file()


def test_a_points_file_in_place_of_the_folder_is_one_clear_error(tmp_path, capsys, monkeypatch):
    pytest.importorskip("pyarrow")
    monkeypatch.setattr(sweep_run, "measure_point", _fake_row)
    out = tmp_path / "s"
    args = ["sweep", "tanh-rnn", "-o", str(out), "--hidden", "2", "--steps", "3", "--workers", "0",
            "--quiet", "--no-figures"]
    assert main(args) == 0
    for f in (out / "points").iterdir():
        f.unlink()
    (out / "points").rmdir()
    (out / "points").write_text("not a folder")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "points is not a directory" in err and err.count("\n") == 1
    assert (out / "points").read_text() == "not a folder"


def test_phase_diagram_names_the_cells_it_leaves_out(tmp_path, monkeypatch):
    """More than MAX_PANELS cells of one size: the panels beyond it used to vanish without a word."""
    cells = [f"cell{i:02d}" for i in range(sweep_plots.MAX_PANELS + 2)]
    rows = [{"key": f"{c}{g}", "cell": c, "gain": g, "forget_bias": None, "hidden": 2, "input": 1,
             "steps": 3, "seed": 0, "batch": 1, "init": "orthogonal", "rate": -0.1 * g, "rate_fro": -0.1,
             "rate_grad": -0.1, "log10_norm_k0": -1.0, "rate_cell_state": None, "seconds": 0.0}
            for c in cells for g in (0.5, 1.0)]
    titles: list[str] = []

    def keep_title(fig, stem, formats):
        titles.append(fig._suptitle.get_text() if fig._suptitle is not None else "")
        return []

    monkeypatch.setattr(sweep_plots, "save_figure", keep_title)
    sweep_plots.write_sweep_figures(rows, tmp_path)
    phase = titles[-1]
    assert f"first {sweep_plots.MAX_PANELS} of {len(cells)} cells" in phase
    assert cells[-1] in phase and cells[-2] in phase and cells[0] not in phase.split("not drawn")[1]


@pytest.fixture
def lstm_files(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"rnn": torch.nn.LSTM(3, 5), "fc": torch.nn.Linear(5, 4)})
    torch.save(model.state_dict(), tmp_path / "m.pt")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((4, 2, 3)))
    np.save(tmp_path / "y.npy", np.array([0, 3]))
    (tmp_path / "garbage.pt").write_bytes(b"garbage!")
    np.save(tmp_path / "array.npy", np.zeros((1, 2, 5)))
    (tmp_path / "array.npz").write_bytes((tmp_path / "array.npy").read_bytes())  # an .npy named .npz
    np.savez(tmp_path / "named.npz", W=np.ones((4, 5)))
    torch.save({"weight": torch.ones(4, 6)}, tmp_path / "wide.pt")   # in-features 6, hidden size 5
    return tmp_path


@pytest.mark.parametrize("extra, words", [
    (["--head", "{d}/garbage.pt"], "head file {d}/garbage.pt is not a readable PyTorch file"),
    (["--head", "{d}/array.npz"], "save the head with np.savez(PATH, weight=..., bias=...)"),
    (["--head", "{d}/named.npz"], "head file {d}/named.npz has none of the arrays it needs (weight, bias)"),
    (["--initial", "{d}/array.npz"], "initial file {d}/array.npz is a single .npy array"),
    (["--head", "{d}/wide.pt"], "the head's weight must be (K, 5) (in-features = the hidden size 5), but "
                                "'(top level)' is (4, 6)"),
])
def test_head_and_initial_files_are_named_as_such(lstm_files, capsys, extra, words):
    """These files used to be called 'weights file', with a hint to save weight_ih, weight_hh; a head
    of the wrong in-features was told to 'name it with --head PREFIX'."""
    d = str(lstm_files)
    args = ["flow", "lstm", "--weights", f"{d}/m.pt", "--inputs", f"{d}/x.npy", "--no-lyapunov",
            "--loss", "last", "--targets", f"{d}/y.npy", *[e.format(d=d) for e in extra]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("gradflow: error: ") and words.format(d=d) in err
    assert "weight_ih" not in err and "weights file" not in err


def test_batch_first_every_targets_are_checked_in_their_own_layout(lstm_files, capsys):
    """(T, B) targets with --batch-first used to be transposed first, then reported as 'got (B, T),
    must be (T, B)': the shape the user had given was named as the one wanted."""
    d = lstm_files
    x = np.load(d / "x.npy")                                 # (T, B, m) = (4, 2, 3)
    np.save(d / "xb.npy", x.transpose(1, 0, 2))
    y = np.random.default_rng(1).integers(0, 4, (4, 2))      # (T, B)
    np.save(d / "y_tb.npy", y)
    np.save(d / "y_bt.npy", y.T)
    base = ["flow", "lstm", "--weights", str(d / "m.pt"), "--no-lyapunov", "--loss", "every", "--json"]
    assert main([*base, "--inputs", str(d / "xb.npy"), "--batch-first", "--targets", str(d / "y_tb.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "has shape (4, 2); with --batch-first, --loss every needs (batch, T) = (2, 4)" in err
    assert main([*base, "--inputs", str(d / "xb.npy"), "--batch-first", "--targets", str(d / "y_bt.npy")]) == 0
    batch_first = capsys.readouterr().out
    assert main([*base, "--inputs", str(d / "x.npy"), "--targets", str(d / "y_tb.npy")]) == 0
    assert capsys.readouterr().out == batch_first             # the same run, laid out time first


def test_numpy_numbers_make_a_grid():
    """np.arange / np.array gains were refused ('must be finite numbers, got np.int64(1)')."""
    pts = gf.grid_points(["tanh-rnn"], gains=np.array([1, 2]), hidden=[2], steps=[3], seeds=np.arange(2))
    assert sorted({p.gain for p in pts}) == [1.0, 2.0] and len(pts) == 4
    assert gf.grid_points(["tanh-rnn"], gains=[1.0, 2.0], hidden=[2], steps=[3], seeds=[0, 1])[0].key == pts[0].key
    with pytest.raises(gf.GradflowError, match="finite numbers"):
        gf.grid_points(["tanh-rnn"], gains=[np.True_], hidden=[2], steps=[3])


def test_a_head_without_outputs_is_refused():
    """V of shape (0, n) used to end in 'class indices in 0..-1'."""
    net = gf.network("tanh-rnn", 3, 2, seed=0)
    with pytest.raises(gf.GradflowError, match="the head has no outputs"):
        gf.gradient_flow(net, np.ones((3, 2, 2)), loss="last", head=(np.ones((0, 3)), None),
                         targets=[0, 0], lyapunov=False)


def test_path_section_words_match_its_numbers():
    """The rotation sentence said 'the product's norm is the product of the moduli' while the number
    beside it is the largest over the modes; the LSTM's said 'the sweep's carousel curve' in a report
    that runs no sweep. The LRU number is checked here against |λ_j| = exp(−exp ν_j), max over modes."""
    from types import SimpleNamespace

    from gradflow._views.bibtex import bibliography_text, parse_bibtex
    from gradflow._views.document import Doc
    from gradflow._views.paths import gradient_path_section

    cells = [gf.get_cell("lru"), gf.get_cell("lstm")]
    x = gf.random_inputs(4, 2, seed=0)
    runs = {}
    for c in cells:
        net = gf.network(c, 2, 2, seed=0)
        runs[c.name] = SimpleNamespace(net=net, flow=gf.gradient_flow(net, x, carousel="c" in c.states,
                                                                       lyapunov=False))
    doc = Doc(parse_bibtex(bibliography_text()))
    rows = {r["cell"]: r for r in gradient_path_section(doc, cells, runs, 2, 4, 0)}
    md = doc.markdown()
    assert "largest, over the modes, of the product over the steps of the moduli" in md
    assert "sweep" not in md and "measured carousel curve (Section " in md  # a reference to the evidence section
    nu = np.asarray(runs["lru"].net.weights.arrays[r"\nu"], dtype=float)   # |λ_j| = exp(−exp ν_j), every step
    assert rows["lru"]["path"] == pytest.approx(4 * np.log10(np.exp(-np.exp(nu))).max(), rel=1e-12)
    assert rows["lru"]["path"] > 4 * np.log10(np.exp(-np.exp(nu))).min()   # the largest, not any mode


def test_phase_diagram_draws_exact_zero_products_not_blank():
    """A rate of −∞ (a product exactly 0: the strongest vanishing) was masked like a missing point
    and drawn blank, i.e. in the white that the diverging scale gives a rate of 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gradflow._numeric.analysis import PhaseGrid
    from gradflow._views.plots import plot_phase_diagram

    rates = np.array([[-np.inf, -0.2, np.nan]])
    grid = PhaseGrid((0.0, 1.0, 2.0), (None,), rates, "relu-rnn", 2, 4, "full", "orthogonal")
    fig, ax = plt.subplots()
    try:
        plot_phase_diagram(grid, ax=ax)
        shown = ax.images[0].get_array()
        assert float(shown[0, 0]) == -0.2 and not np.ma.getmaskarray(shown)[0, 0]   # the scale's end, ±0.2
        assert np.ma.getmaskarray(shown)[0, 2]                                       # missing stays missing
        bad = ax.images[0].get_cmap().get_bad()
        assert tuple(bad[:3]) != (1.0, 1.0, 1.0)                                      # and is not white
        assert [t.get_text() for t in ax.texts] == ["−∞ (exact 0)"]
    finally:
        plt.close(fig)


def test_gains_apply_only_to_cells_with_a_recurrent_matrix(capsys, tmp_path):
    """The gain was applied to cells without W (S4D, LRU, minGRU …), where it scaled their Glorot-drawn
    parameters (log Δ, ν …) while the figure called it 'σ_max of each gate's W'."""
    pts = gf.grid_points(["s4d", "mingru", "lstm"], gains=[0.5, 2.0], hidden=[2], steps=[3])
    by_cell: dict[str, set] = {}
    for p in pts:
        by_cell.setdefault(p.cell, set()).add(p.gain)
    assert by_cell == {"s4d": {1.0}, "mingru": {1.0}, "lstm": {0.5, 2.0}}
    code = main(["sweep", "s4d", "mingru", "-o", str(tmp_path / "s"), "--gains", "0.5,2", "--hidden", "2",
                 "--steps", "3", "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "none of s4d, mingru has one" in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def _always_fails(point):
    raise FloatingPointError("overflow in the test")


def test_a_grid_whose_every_point_fails_leaves_no_earlier_table_behind(tmp_path, capsys, monkeypatch):
    """The message said 'no table' while an earlier grid's results.parquet and figures stayed."""
    pytest.importorskip("pyarrow")
    out = tmp_path / "s"
    base = ["sweep", "tanh-rnn", "-o", str(out), "--hidden", "2", "--steps", "3", "--workers", "0", "--quiet",
            "--csv"]
    monkeypatch.setattr(sweep_run, "measure_point", _fake_row)
    assert main([*base, "--no-figures"]) == 0
    (out / "decay_rates.png").write_bytes(b"old")
    monkeypatch.setattr(sweep_run, "measure_point", _always_fails)
    assert main([*base, "--gains", "7"]) == 2
    captured = capsys.readouterr()
    assert "no table" in captured.out and "3 finished" not in captured.err
    assert not any((out / n).exists() for n in ("results.parquet", "results.csv", "decay_rates.png"))
    assert len(list((out / "points").glob("*.json"))) == 3   # the earlier grid's points stay


def test_flow_table_columns_line_up_with_their_headers(capsys):
    """The ‖∂L/∂s_k‖ values were one character left of their 11-wide header, shifting the rest."""
    import re

    assert main(["flow", "tanh-rnn", "--hidden", "2", "--input", "2", "--steps", "3", "--no-lyapunov"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["k", "T-k"])
    ends = [m.end() for m in re.finditer(r"\S+", lines[head])]
    assert len(ends) == 6   # k, T-k, ||.||_2, ||.||_F, ||dL/ds_k||, bound
    for row in lines[head + 1:head + 4]:
        assert [m.end() for m in re.finditer(r"\S+", row)] == ends


def test_rate_grad_of_a_point_matches_autograd():
    """The sweep's ``rate_grad`` (not checked by test_sweep's oracle): the slope of the batch-mean
    log10 ‖∂L/∂h_k‖, L = Σ_i (h_T)_i, from PyTorch autograd through h_t = tanh(W h_{t−1} + U x_t + b)."""
    torch = pytest.importorskip("torch")
    point = gf.GridPoint("tanh-rnn", 1.3, None, 3, 2, 6, 1, 2, "orthogonal")
    row = gf.measure_point(point)
    net = gf.network("tanh-rnn", 3, 2, init="orthogonal", seed=1, gain=1.3)
    a = {k: torch.tensor(np.asarray(v)) for k, v in net.weights.arrays.items()}
    x = torch.tensor(gf.random_inputs(6, 2, batch=2, seed=1))
    hs = [torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)]
    for t in range(6):
        h = torch.tanh(hs[-1] @ a["W"].T + x[t] @ a["U"].T + a["b"].reshape(-1))
        h.retain_grad()
        hs.append(h)
    hs[-1].sum().backward()
    curve = np.array([np.log10(hs[k].grad.norm(dim=1).numpy()).mean() for k in range(6)])
    assert row["rate_grad"] == pytest.approx(np.polyfit(6 - np.arange(6), curve, 1)[0], rel=1e-9)


def test_rows_read_back_through_pandas_draw_the_same_grids():
    """pandas reads a missing forget bias or rate back as NaN, not None: the grids came out all NaN
    (blank panels) and the rate lines keyed by NaN. Rows with NaN in place of None, built here."""
    pts = gf.grid_points(["tanh-rnn", "lstm"], gains=[0.5, 1.0], hidden=[2], steps=[3])
    rows = [_fake_row(p) for p in pts]
    as_pandas = [{k: (float("nan") if v is None else v) for k, v in r.items()} for r in rows]
    want = {g.cell: g for g in gf.phase_grids(rows)}
    got = {g.cell: g for g in gf.phase_grids(as_pandas)}
    for cell in ("tanh-rnn", "lstm"):
        assert got[cell].forget_biases == (None,)
        assert np.array_equal(got[cell].rates, want[cell].rates) and np.isfinite(got[cell].rates).all()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = sweep_plots.plot_sweep_rates(as_pandas)
    try:
        assert sorted(line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")) == \
            ["lstm", "tanh-rnn"]
    finally:
        plt.close(ax.figure)


def test_path_numbers_of_rg_lru_and_s4d_against_the_papers():
    """test_ssm_report checks the printed path number of five cells; RG-LRU and S4D had none. Here:
    RG-LRU a_t = σ(Λ)^{c r_t}, r_t = σ(U_a x_t + b_a), c = 8 (De et al. 2024); S4D |λ_j| =
    exp(Δ_j Re A_j) = exp(−exp(log Δ_j) exp(A_re,log_j)) at every step (Gu et al. 2022)."""
    from types import SimpleNamespace

    from gradflow._views.bibtex import bibliography_text, parse_bibtex
    from gradflow._views.document import Doc
    from gradflow._views.paths import gradient_path_section

    T = 5
    cells = [gf.get_cell("rg-lru"), gf.get_cell("s4d")]
    x = gf.random_inputs(T, 2, seed=3)
    runs = {}
    for c in cells:
        net = gf.network(c, 2, 2, seed=3)
        runs[c.name] = SimpleNamespace(net=net, flow=gf.gradient_flow(net, x, lyapunov=False))
    doc = Doc(parse_bibtex(bibliography_text()))
    rows = {r["cell"]: r for r in gradient_path_section(doc, cells, runs, 2, T, 3)}
    a = {k: np.asarray(v, dtype=float) for k, v in runs["rg-lru"].net.weights.arrays.items()}
    r = 1 / (1 + np.exp(-(x[:, 0] @ a["U_{a}"].T + a["b_{a}"])))          # (T, n)
    v = (1 / (1 + np.exp(-a[r"\Lambda"]))) ** (8.0 * r)
    assert rows["rg-lru"]["path"] == pytest.approx(np.log10(v).sum(axis=0).max(), rel=1e-12)
    s = {k: np.asarray(v, dtype=float) for k, v in runs["s4d"].net.weights.arrays.items()}
    modulus = np.exp(-np.exp(s[r"\log\Delta"]) * np.exp(s[r"A_{re,\log}"]))
    assert rows["s4d"]["path"] == pytest.approx(T * np.log10(modulus).max(), rel=1e-12)
