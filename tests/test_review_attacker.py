"""An attacker's and a careless user's files and names: each defect found in review, with the
input that showed it. Oracles: files crafted here byte by byte (pickle opcodes written out, zip
archives built with :mod:`zipfile`), memory measured with :mod:`tracemalloc`, and the rules of
the project (one ``GradflowError``; nothing allocated beyond the memory allowed)."""

from __future__ import annotations

import json
import os
import struct
import threading
import tracemalloc
import zipfile

import numpy as np
import pytest

from gradflow import GradflowError
from gradflow._numeric import size_guard
from gradflow._numeric.loading import read_pt

# ------------------------------------------------------------------------------------------------
# pickles written opcode by opcode (protocol 2), as torch.save lays them out
# ------------------------------------------------------------------------------------------------


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _tensor(numel: int, *, memo_put: int | None = None, memo_get: int | None = None) -> bytes:
    """``_rebuild_tensor_v2(storage, 0, (numel,), (1,), False, OrderedDict())`` over storage "0"
    (its persistent id written out, or fetched from the memo)."""
    out = _global("torch._utils", "_rebuild_tensor_v2") + b"("
    if memo_get is not None:
        out += b"h" + bytes([memo_get])
    else:
        out += (b"(" + _str("storage") + _global("torch", "FloatStorage") + _str("0") + _str("cpu")
                + _int(numel) + b"tQ")
        if memo_put is not None:
            out += b"q" + bytes([memo_put])
    return (out + _int(0) + b"(" + _int(numel) + b"t(" + _int(1) + b"t\x89"
            + _global("collections", "OrderedDict") + b")RtR")


def _write_pt(path, pickle_bytes: bytes, storages: dict[str, bytes], compress: bool = False) -> None:
    how = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", how) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", "3\n")


@pytest.fixture
def memory_20mb(monkeypatch):
    from gradflow._numeric import keras_loading

    monkeypatch.setattr(size_guard, "available_bytes", lambda device=None: 20 << 20)
    monkeypatch.setattr(keras_loading, "available_bytes", lambda: 20 << 20)  # imported by name there
    return 20 << 20


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_pt_one_storage_many_tensors_refused_before_copying(tmp_path, memory_20mb):
    """200 tensors over one 1 MB storage: 200 MB of copies. Before the fix all were made (and the
    storage read 200 times) before the size check; now the running total stops the reading."""
    n = 250_000  # float32: 1 MB
    pk = b"\x80\x02" + _global("collections", "OrderedDict") + b")R("
    pk += _str("t0") + _tensor(n, memo_put=1)
    for i in range(1, 200):
        pk += _str(f"t{i}") + _tensor(n, memo_get=1)
    pk += b"u."
    path = tmp_path / "shared.pt"
    _write_pt(path, pk, {"0": np.zeros(n, "f4").tobytes()})

    def load():
        with pytest.raises(GradflowError, match="its tensors need more than"):
            read_pt(str(path))

    assert _peak(load) < memory_20mb


def test_pt_shared_storage_read_once_and_correct(tmp_path):
    """Two tensors over one storage (as tied weights are saved): both read, equal to the data."""
    data = np.arange(6, dtype="f4")
    pk = (b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + _str("a") + _tensor(6, memo_put=1)
          + _str("b") + _tensor(6, memo_get=1) + b"u.")
    path = tmp_path / "tied.pt"
    _write_pt(path, pk, {"0": data.tobytes()})
    state = read_pt(str(path))
    np.testing.assert_array_equal(state["a"], data)
    np.testing.assert_array_equal(state["b"], data)


def test_pt_compressed_pickle_bomb_refused_unread(tmp_path, memory_20mb):
    """A 2 KB archive whose deflated data.pkl unpickles into 2 million dicts (about 180 MB):
    refused from its declared size, before one object is built."""
    path = tmp_path / "bomb.pt"
    _write_pt(path, b"\x80\x02](" + b"}" * 2_000_000 + b"e.", {}, compress=True)
    assert path.stat().st_size < 10_000

    def load():
        with pytest.raises(GradflowError, match="data.pkl"):
            read_pt(str(path))

    assert _peak(load) < 1 << 20


# ------------------------------------------------------------------------------------------------
# Keras files whose config.json was written by hand (or damaged)
# ------------------------------------------------------------------------------------------------


def _keras_file(path, config, *, klass: str = "lstm", gates: int = 4, bias_shape=None, n: int = 3,
                m: int = 2) -> str:
    h5py = pytest.importorskip("h5py")
    import io
    import json

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        g = f.create_group(f"layers/{klass}/cell/vars")
        rng = np.random.default_rng(0)
        g["0"] = rng.standard_normal((m, gates * n))
        g["1"] = rng.standard_normal((n, gates * n))
        g["2"] = rng.standard_normal(bias_shape or (gates * n,))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model.weights.h5", buf.getvalue())
        if config is not None:
            z.writestr("config.json", json.dumps(config))
    return str(path)


BAD_CONFIGS = {
    "layer config a list": {"config": {"layers": [{"class_name": "LSTM", "config": [1, 2]}]}},
    "layers a number": {"config": {"layers": 5}},
    "RNN cell config a list": {"config": {"layers": [
        {"class_name": "RNN", "config": {"cell": {"class_name": "LSTMCell", "config": [1]}}}]}},
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_keras_wrongly_typed_config_is_one_error(tmp_path, case):
    """Before the fix: AttributeError / TypeError tracebacks from the configuration walk."""
    import gradflow as gf

    path = _keras_file(tmp_path / "m.keras", BAD_CONFIGS[case])
    with pytest.raises(GradflowError, match="config.json is not a Keras model configuration"):
        gf.load_weights("lstm", path)


@pytest.mark.parametrize("config", [{"class_name": "Sequential", "config": {"layers": 5}},
                                    {"class_name": "Sequential", "config": {"layers": [
                                        {"class_name": "Bidirectional", "config": {"layer": [1]}}]}}])
def test_keras_stack_wrongly_typed_config_is_one_error(config):
    from gradflow._numeric.keras_stack import keras_stack

    with pytest.raises(GradflowError, match="config.json is not a Keras model configuration"):
        keras_stack(config, "weights file m.keras")


def test_keras_gru_bias_must_match_reset_after(tmp_path):
    """A GRU saved with reset_after=True has a (2, 3n) bias; a (3n,) bias is a Cho GRU's. Before the
    fix a configuration saying reset_after=True over a (3n,) bias was read as PyTorch's GRU with
    b_hh = 0: a silent wrong network. The same arrays without a configuration are gru-cho."""
    import gradflow as gf

    config = {"config": {"layers": [{"class_name": "GRU", "config": {"name": "g", "reset_after": True}}]}}
    lying = _keras_file(tmp_path / "lying.keras", config, klass="gru", gates=3)
    with pytest.raises(GradflowError, match=r"bias of shape \(9,\).*has \(2, 9\)"):
        gf.load_weights("gru", lying)
    bare = _keras_file(tmp_path / "bare.keras", None, klass="gru", gates=3)
    with pytest.warns(UserWarning, match="no layer configuration"):
        gf.load_weights("gru-cho", bare)


# ------------------------------------------------------------------------------------------------
# a sweep resumed over an edited or damaged points file
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("edit", [{"hidden": 999}, {"cell": "lstm"}, {"rate": "x"}, {"hidden": "abc"},
                                  {"gain": True}])
def test_sweep_resume_recomputes_a_point_file_that_is_not_its_point(tmp_path, edit):
    """Before the fix an edited points/KEY.json went into the table as it was (a row saying n = 999
    or cell lstm under the key of tanh-rnn n = 4: a silent wrong row), and a value of the wrong
    type stopped the run with pyarrow's ArrowInvalid. Oracle: the stub's row, written out here."""
    import json

    from gradflow._numeric.sweep_grid import COLUMNS, grid_points
    from gradflow._numeric.sweep_run import run_sweep

    (point,) = grid_points(["tanh-rnn"], gains=[1.0], forget_biases=(None,), hidden=[4], steps=[5],
                           seeds=[0], input=2, batch=1, init="orthogonal")

    def stub(p):
        params = {"key": p.key, "cell": p.cell, "gain": p.gain, "forget_bias": p.forget_bias,
                  "hidden": p.hidden, "input": p.input, "steps": p.steps, "seed": p.seed,
                  "batch": p.batch, "init": p.init}
        return {c: params.get(c, 0.25) for c in COLUMNS}

    out = tmp_path / "sweep"
    run_sweep([point], out, workers=0, compute=stub, parquet=False, csv=True)
    f = out / "points" / f"{point.key}.json"
    json.loads(f.read_text())  # written by the first run
    f.write_text(json.dumps({**stub(point), **edit}))
    with pytest.warns(UserWarning, match="did not match their point"):
        res = run_sweep([point], out, workers=0, compute=stub, parquet=False, csv=True)
    assert (res.resumed, res.computed) == (0, 1)
    assert res.rows == [stub(point)]
    assert json.loads(f.read_text())["hidden"] == 4
    rerun = run_sweep([point], out, workers=0, compute=stub, parquet=False, csv=True)
    assert (rerun.resumed, rerun.computed) == (1, 0)  # a good file is still resumed


# ------------------------------------------------------------------------------------------------
# user cells: names and titles that reach LaTeX, Markdown and file names
# ------------------------------------------------------------------------------------------------


def _leaky(const: str = "lambda", gate: str = "g", let: str = "a"):
    import gradflow as gf

    def definition(r):
        lam = r.const(const, 0.9)
        a = r.let(let, r.affine(gate))
        return {"h": lam * r.prev["h"] + (1 - lam) * gf.tanh(a)}

    return definition


@pytest.mark.parametrize("where, value", [("const", "lam%bda"), ("gate", "g#1"), ("gate", "g$x$"),
                                          ("let", r"\input{/etc/hostname}"), ("let", "a}{"),
                                          ("let", "a\nb"), ("const", r"\immediate\write18{ls}")])
def test_user_cell_symbol_names_that_are_tex_markup_are_refused(where, value):
    """Before the fix these names went into report-body.tex as they were: '%' commented out the rest
    of an equation line (silently), '#' broke the build, \\input read a file of the machine into
    the PDF of whoever compiled the report."""
    import gradflow as gf

    with pytest.raises(GradflowError, match="printed into the report"):
        gf.make_cell("leaky-bad", _leaky(**{where: value}))


def test_user_cell_names_like_the_library_s_are_accepted():
    import gradflow as gf

    cell = gf.make_cell("leaky-ok", _leaky(const=r"\Delta t", gate="f'", let=r"\tilde{h}^{re}"))
    tex = cell.recorded_latex()
    assert r"\tilde{h}^{re}" in tex and r"\Delta t" in tex and "W_{f'}" in tex


@pytest.mark.parametrize("title", ["a $\\input{x}$ b", "two\nlines", "x = 50% more", "<img src=x>",
                                   "see [@key]", "`code`", "back\\slash"])
def test_user_cell_titles_with_markup_are_refused(title):
    """Before the fix a title's $…$ went into the LaTeX raw, `…` became code, [@key] a citation,
    a newline a new Markdown block, and 'x = …' was made a formula printed raw ('%' inside it then
    commented out the rest of the heading)."""
    import gradflow as gf

    with pytest.raises(GradflowError, match="cell title is one line of plain text"):
        gf.make_cell("leaky-title", _leaky(), title=title)


def test_user_cell_title_with_tex_specials_is_kept_and_escaped():
    import gradflow as gf
    from gradflow._views.escape import tex_chars

    cell = gf.make_cell("leaky-pct", _leaky(), title="50% #1 & ~ ^ {a} (Chen 2017)")
    assert cell.title == "50% #1 & ~ ^ {a} (Chen 2017)"
    assert tex_chars(cell.title) == r"50\% \#1 \& \textasciitilde{} \textasciicircum{} \{a\} (Chen 2017)"


def test_registered_cell_with_underscore_is_found_by_name():
    """make_cell accepts '_' in a name, but get_cell turned every '_' into '-' before the fix: the
    registered cell 'leaky_under' was 'unknown' to get_cell, the CLI and reports."""
    import gradflow as gf

    cell = gf.make_cell("leaky_under", _leaky(), register=True)
    try:
        assert gf.get_cell("leaky_under") is cell
        assert gf.get_cell("lstm") is gf.CELLS["lstm"]
        assert gf.get_cell("LSTM_1997") is gf.CELLS["lstm-1997"]  # the library's '_' → '-' still works
    finally:
        gf.CELLS.pop("leaky_under", None)
    with pytest.raises(GradflowError, match="would hide 'lstm-1997'"):
        gf.make_cell("lstm_1997", _leaky(), register=True)
    assert gf.get_cell("lstm_1997") is gf.CELLS["lstm-1997"]


@pytest.mark.parametrize("name", ["../../escape", "a/b", "Upper", " spaced", "x$"])
def test_register_cell_checks_the_name_as_make_cell_does(name):
    """Before the fix register_cell took any Cell's name, e.g. one made with dataclasses.replace:
    '../../escape' then named the report's figure files outside the report directory."""
    import dataclasses

    import gradflow as gf

    cell = dataclasses.replace(gf.make_cell("leaky-reg", _leaky()), name=name)
    with pytest.raises(GradflowError, match="cell name"):
        gf.register_cell(cell)
    assert name not in gf.CELLS


# ------------------------------------------------------------------------------------------------
# damaged compressed zip members (.npz, .pt, .keras)
# ------------------------------------------------------------------------------------------------


def _damage_first_member(path) -> None:
    """Flip 40 bytes inside the deflated data of the archive's first member (its local header is
    30 bytes plus the name): zlib then fails with zlib.error, which is no OSError nor ValueError."""
    raw = bytearray(path.read_bytes())
    name_len = struct.unpack("<H", raw[26:28])[0]
    start = 30 + name_len + 20
    for i in range(start, start + 40):
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_damaged_deflated_npz_member_is_one_error(tmp_path):
    from gradflow._numeric.loading import read_weights_file

    data = _npy_bytes(np.random.default_rng(0).standard_normal((12, 3)))
    path = tmp_path / "w.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("weight_ih.npy", data)
        z.writestr("weight_hh.npy", data)
    _damage_first_member(path)
    with pytest.raises(GradflowError, match="member weight_ih is corrupt"):
        read_weights_file(str(path))


def test_damaged_deflated_pt_is_one_error(tmp_path):
    pytest.importorskip("torch")
    n = 4000
    pk = (b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + _str("weight_hh") + _tensor(n)
          + b"u.")
    path = tmp_path / "w.pt"
    _write_pt(path, pk, {"0": np.random.default_rng(0).standard_normal(n).astype("f4").tobytes()},
              compress=True)
    _damage_first_member(path)
    with pytest.raises(GradflowError, match="not a readable PyTorch file"):
        read_pt(str(path))


def test_damaged_deflated_keras_is_one_error(tmp_path):
    import gradflow as gf

    good = _keras_file(tmp_path / "good.keras", None)
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.weights.h5", src.read("model.weights.h5"))
    _damage_first_member(path)
    with pytest.raises(GradflowError, match="not a readable .keras archive"):
        gf.load_weights("lstm", str(path))


# ------------------------------------------------------------------------------------------------
# a recordings file edited by hand
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", {"a": 1}, [1], True, "-inf"])
def test_recording_curve_value_not_a_number_is_one_error(tmp_path, value):
    """Before the fix: ValueError/TypeError from float() (not GradflowError), or True and "-inf"
    plotted as 1 and −∞ though a recording writes only numbers, null and "inf"."""
    import json

    from gradflow._numeric.training import curve_matrix, read_records

    path = tmp_path / "flow.jsonl"
    good = {"step": 0, "curve": [{"k": 0, "log10_norm_2": -1.5}, {"k": 1, "log10_norm_2": None}]}
    bad = {"step": 5, "curve": [{"k": 0, "log10_norm_2": value}, {"k": 1, "log10_norm_2": "inf"}]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    records = read_records(path)
    steps, values = curve_matrix(records[:1])
    assert values.tolist() == [[-1.5, -np.inf]]
    with pytest.raises(GradflowError, match=r"recording 1 \(step 5\), k = 0: log10_norm_2 is"):
        curve_matrix(records)


def test_cli_float_option_in_other_digits_is_refused(capsys):
    """float() reads Arabic-Indic digits ('١' is 1): before the fix --forget-bias ١ ran as b_f = 1,
    while --hidden ١٦ was refused. Now both are one error line, exit 2."""
    from gradflow._cli import main

    assert main(["flow", "lstm", "--hidden", "4", "--steps", "3", "--forget-bias", "\u0661"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradflow: error: --forget-bias must be a number in plain digits") and err.count("\n") == 1


def test_pt_nested_broadcast_tensor_refused_from_its_declared_size(tmp_path):
    """A checkpoint {'model': {...}} holding a stride-0 view that declares 58 TiB: the size check
    looked only at the top level, so the file was accepted and the later copy ran out of memory
    (exit 1, 'the size estimate was too low'; with overcommit, the OOM killer). Oracle: the sizes
    written into the file here (4e6 × 1e6 float64 = 3.2e13 bytes)."""
    torch = pytest.importorskip("torch")
    w = torch.zeros(1, dtype=torch.float64).expand(4 * 10**6, 10**6)
    path = tmp_path / "nested.pt"
    torch.save({"model": {"rnn.weight_ih_l0": w, "rnn.weight_hh_l0": w}, "epoch": 3}, path)
    with pytest.raises(GradflowError, match="declares 58.21 TiB of data"):
        read_pt(str(path))
    small = tmp_path / "small.pt"
    torch.save({"model": torch.nn.LSTM(2, 3).state_dict(), "epoch": 3}, small)
    assert read_pt(str(small))["model"]["weight_hh_l0"].shape == (12, 3)


# ------------------------------------------------------------------------------------------------
# HDF5 datasets whose data are not in the file
# ------------------------------------------------------------------------------------------------


def _h5_with(path, make_recurrent):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        g = f.create_group("layers/simple_rnn/cell/vars")
        g["0"] = np.zeros((2, 4))
        make_recurrent(g, h5py)
        g["2"] = np.zeros(4)
    return str(path)


@pytest.mark.parametrize("kind", ["external raw file", "virtual dataset", "external link"])
def test_keras_h5_data_outside_the_file_are_refused(tmp_path, kind):
    """Before the fix the recurrent kernel was read from /elsewhere: a crafted .weights.h5 made
    gradflow read any local file (here: a 'secret' of 128 bytes) as the weights W."""
    import gradflow as gf

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(16, dtype="<f8").tobytes())
    other = tmp_path / "other.h5"
    h5py = pytest.importorskip("h5py")
    with h5py.File(other, "w") as f:
        f["d"] = np.arange(16.0).reshape(4, 4)

    def make(g, h5py):
        if kind == "external raw file":
            g.create_dataset("1", shape=(4, 4), dtype="<f8", external=[(str(secret), 0, 128)])
        elif kind == "virtual dataset":
            layout = h5py.VirtualLayout(shape=(4, 4), dtype="f8")
            layout[:] = h5py.VirtualSource(str(other), "d", shape=(4, 4))
            g.create_virtual_dataset("1", layout)
        else:
            g["1"] = h5py.ExternalLink(str(other), "d")

    path = _h5_with(tmp_path / "m.weights.h5", make)
    with pytest.raises(GradflowError, match="keeps its data outside the file"):
        gf.load_weights("tanh-rnn", path)


def test_keras_h5_empty_dataset_is_one_error(tmp_path):
    """A null-dataspace dataset (shape None) was a TypeError traceback from the size check."""
    import gradflow as gf

    def make(g, h5py):
        g.create_dataset("1", data=h5py.Empty("f8"))

    path = _h5_with(tmp_path / "m.weights.h5", make)
    with pytest.raises(GradflowError, match="empty HDF5 dataset"):
        gf.load_weights("tanh-rnn", path)


def test_keras_h5_plain_file_still_read(tmp_path):
    import gradflow as gf

    W = np.arange(16.0).reshape(4, 4) / 100

    def make(g, h5py):
        g["1"] = W

    path = _h5_with(tmp_path / "m.weights.h5", make)
    with pytest.warns(UserWarning):
        net = gf.load_weights("tanh-rnn", path)
    np.testing.assert_array_equal(net.arrays["W"], W.T)  # Keras' recurrent kernel is Wᵀ


# ------------------------------------------------------------------------------------------------
# a pipe or a FIFO given as a file
# ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
@pytest.mark.parametrize("reader", ["npy", "pt", "npz", "keras"])
def test_fifo_given_as_a_file_is_refused_not_waited_on(tmp_path, reader):
    """Before the fix open() of a FIFO without a writer blocked for ever (and a pipe from
    `--inputs <(…)` was read twice: 'is empty' or 'not a valid .npy array' for a good array)."""

    import gradflow as gf
    from gradflow._numeric.loading import read_npy, read_weights_file

    suffix = {"npy": ".npy", "pt": ".pt", "npz": ".npz", "keras": ".weights.h5"}[reader]
    path = str(tmp_path / f"fifo{suffix}")
    os.mkfifo(path)
    call = {"npy": lambda: read_npy(path), "pt": lambda: read_weights_file(path),
            "npz": lambda: read_weights_file(path), "keras": lambda: gf.load_weights("lstm", path)}[reader]
    got = _error_on_fifo(path, call, 10, os.O_WRONLY, "reading a FIFO blocked")
    assert got and "is not a regular file" in got[0]


def _error_on_fifo(path, call, wait: float, release: int, blocked: str) -> list:
    """The GradflowError messages of ``call()`` on the FIFO ``path``, run in a thread; if it is
    still blocked in open() after ``wait`` s, the other end is opened (``release``) and the test fails."""
    got: list = []

    def run():
        try:
            call()
        except GradflowError as e:
            got.append(str(e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(wait)
    if t.is_alive():  # blocked in open(): release it from the other end, then fail
        os.close(os.open(path, release | os.O_NONBLOCK))
        t.join(5)
        pytest.fail(blocked)
    return got


def test_cli_huge_probes_refused_before_allocating(capsys):
    """--probes was not in the size estimate: 10¹² probe vectors went to the allocation (exit 1,
    'out of memory (the size estimate was too low)'). Now the estimate counts them: exit 2 before
    anything is allocated, the probes named."""
    from gradflow._cli import main

    code = main(["flow", "lstm", "--hidden", "4", "--steps", "5", "--mode", "matrix-free",
                 "--probes", str(10**12)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gradflow: error: lstm with hidden size 4")
    assert "1000000000000 probe vectors needs about" in err and err.count("\n") == 1


def test_npz_many_members_counted_together(tmp_path, memory_20mb):
    """Each member was checked alone: 12 deflated members of 4 MB zeros (a 50 KB archive) were all
    read, 48 MB against a 16 MB budget, before anything said no. Now their sum is checked before
    each member is read."""
    from gradflow._numeric.loading import read_weights_file

    data = _npy_bytes(np.zeros((1000, 500)))  # 4 MB each
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(12):
            z.writestr(f"m{i}.weight_ih.npy", data)
    assert path.stat().st_size < 200_000

    def load():
        with pytest.raises(GradflowError, match="its members read so far"):
            read_weights_file(str(path))

    assert _peak(load) < memory_20mb


def test_keras_h5_many_layers_counted_together(tmp_path, memory_20mb):
    """Each dataset was checked alone: 6 gzip-compressed layers of 4 MB zeros each (a small file)
    were all read, 24+ MB against a 16 MB budget. Now their sum is checked before each is read."""
    h5py = pytest.importorskip("h5py")
    import gradflow as gf

    path = tmp_path / "many.weights.h5"
    with h5py.File(path, "w") as f:
        for i in range(6):
            g = f.create_group(f"layers/simple_rnn_{i}/cell/vars")
            g.create_dataset("0", data=np.zeros((1000, 500)), compression="gzip")
            g.create_dataset("1", data=np.zeros((500, 500)), compression="gzip")
    assert path.stat().st_size < 1_000_000

    def load():
        with pytest.raises(GradflowError, match="datasets read so far declare"):
            gf.load_weights("tanh-rnn", str(path), prefix="simple_rnn_0")

    assert _peak(load) < memory_20mb


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_recorder_refuses_a_fifo_path(tmp_path):
    """Recorder(path=FIFO) opened it for writing, which waits for a reader for ever."""

    torch = pytest.importorskip("torch")
    from gradflow.torch import Recorder

    path = tmp_path / "flow.jsonl"
    os.mkfifo(path)
    got = _error_on_fifo(path, lambda: Recorder(torch.nn.RNN(2, 3), every=1, inputs=np.zeros((4, 1, 2)), path=path),
                         20, os.O_RDONLY, "Recorder blocked on a FIFO")
    assert got and "named pipe" in got[0]


def test_pt_shared_dicts_exponential_tree_refused(tmp_path, monkeypatch):
    """A 4 KB pickle whose memo refers to one dict 50 times at each of 8 levels: a tree of 50⁸
    entries. Before the fix read_pt accepted it and the layer search (flat_state) walked it for
    ever (gradflow flow hung); now the walk is bounded and the file refused."""
    pk = b"\x80\x02}q\x00"  # memo 0: {}
    for level in range(1, 9):
        pk += b"}("
        for i in range(50):
            pk += _str(f"k{i}") + b"h" + bytes([level - 1])
        pk += b"uq" + bytes([level])
    pk += b"."
    path = tmp_path / "tree.pt"
    _write_pt(path, pk, {})
    assert path.stat().st_size < 10_000
    from gradflow._numeric import loading

    monkeypatch.setattr(loading, "MAX_ENTRIES", 20_000, raising=False)  # the bound, small for speed
    with pytest.raises(GradflowError, match="nested entries"):
        read_pt(str(path))


def test_recorder_append_refuses_a_foreign_file(tmp_path):
    """append=True skipped the check that a non-empty file is a gradflow recording: a user's
    training log got JSON lines appended. The file must be left byte for byte as it was; a real
    recording is still appended to."""
    torch = pytest.importorskip("torch")
    from gradflow.torch import Recorder

    log = tmp_path / "train.log"
    log.write_text("epoch 1 loss 0.5\n")
    rnn = torch.nn.RNN(2, 3)
    with pytest.raises(GradflowError, match="appends only to its own recordings"):
        Recorder(rnn, every=1, inputs=np.zeros((4, 1, 2)), path=log, append=True)
    assert log.read_text() == "epoch 1 loss 0.5\n"
    ours = tmp_path / "flow.jsonl"
    Recorder(rnn, every=1, inputs=np.zeros((4, 1, 2)), path=ours).record(0)
    rec = Recorder(rnn, every=1, inputs=np.zeros((4, 1, 2)), path=ours, append=True)
    rec.record(1)
    assert [json.loads(line)["step"] for line in ours.read_text().splitlines()] == [0, 1]


@pytest.mark.parametrize("call", ["network hidden", "network input", "random_inputs"])
def test_api_huge_sizes_refused_before_allocating(call):
    """The CLI checked sizes, the API did not: network(hidden=10⁶) and random_inputs(10¹², …) went
    to NumPy (a MemoryError, or below the overcommit limit the out-of-memory killer). Oracle: the
    sizes written out here (4 gates · n · (n + m) · 8 bytes; T · B · m · 8 twice)."""
    import gradflow as gf

    with pytest.raises(GradflowError, match="need about .* of memory"):
        if call == "network hidden":
            gf.network("lstm", hidden=10**6, input=2)
        elif call == "network input":
            gf.network("lstm", hidden=4, input=10**12)
        else:
            gf.random_inputs(10**12, 2)
    assert gf.network("lstm", hidden=4, input=2).hidden == 4


# ------------------------------------------------------------------------------------------------
# names from a file printed on the terminal
# ------------------------------------------------------------------------------------------------


def test_cli_error_with_names_from_the_file_is_one_inert_line(tmp_path, capsys):
    """An .npz member named 'x\\n\\x1b[31mRED': the error listed it raw, so the 'one line' error
    was two and the terminal ran the escape sequence (here: red text). Now control characters are
    written as their escapes."""
    from gradflow._cli import main

    path = tmp_path / "evil.npz"
    np.savez(path, **{"x\n\x1b[31mRED": np.zeros(3)})
    assert main(["flow", "lstm", "--weights", str(path), "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err
    assert err.startswith("gradflow: error: ") and "(found: x\\n\\x1b[31mRED)" in err


def test_one_line_keeps_printable_text():
    from gradflow._checks import one_line

    assert one_line("σ ≤ 1 … n = 4, 'ok'") == "σ ≤ 1 … n = 4, 'ok'"
    assert one_line("a\tb\r\u202ec") == "a\\tb\\r\\u202ec"  # a right-to-left override, too


# ------------------------------------------------------------------------------------------------
# output directories inside gradflow's own package
# ------------------------------------------------------------------------------------------------


def test_outputs_inside_the_package_folder_are_refused(tmp_path):
    """Before the fix `report -o .../site-packages/gradflow/figs` (or a symbolic link to there)
    created a report inside the installed program, and a sweep likewise."""
    import gradflow as gf
    from gradflow._numeric.sweep_run import PointStore
    from gradflow._views.safe_write import check_target

    package = os.path.dirname(gf.__file__)
    link = tmp_path / "link"
    link.symlink_to(package)
    for out in (os.path.join(package, "report-here"), str(link / "report-here")):
        with pytest.raises(GradflowError, match="inside gradflow's own package folder"):
            check_target(out, force=False)
        with pytest.raises(GradflowError, match="inside gradflow's own package folder"):
            PointStore(out).check()
    assert not os.path.exists(os.path.join(package, "report-here"))
    assert check_target(str(tmp_path / "mine"), force=False) == tmp_path / "mine"


def test_recorder_tensorboard_target_that_is_a_file_is_refused(tmp_path):
    """tensorboard='notes.txt' (an existing file) reached SummaryWriter, whose makedirs fails with
    an OSError traceback (or, without tensorboard installed, was silently ignored)."""
    from gradflow._numeric.training import _tensorboard_writer

    f = tmp_path / "notes.txt"
    f.write_text("mine\n")
    with pytest.raises(GradflowError, match="exists and is not a directory"):
        _tensorboard_writer(f)
    assert f.read_text() == "mine\n"


def test_keras_config_json_inflating_too_far_is_refused(tmp_path, monkeypatch):
    """config.json was read whole whatever it inflated to (a deflated archive of a few KB can hold
    gigabytes of JSON whitespace). Now its declared size is checked first (the limit made small
    here for speed)."""
    import gradflow as gf
    from gradflow._numeric import keras_loading

    monkeypatch.setattr(keras_loading, "CONFIG_LIMIT", 1 << 20)
    good = _keras_file(tmp_path / "good.keras", None)
    path = tmp_path / "big.keras"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.weights.h5", src.read("model.weights.h5"))
        z.writestr("config.json", "{" + " " * (4 << 20) + "}")
    assert path.stat().st_size < 100_000
    with pytest.raises(GradflowError, match="config.json inflates to"):
        gf.load_weights("lstm", str(path))
    from gradflow._numeric.keras_stack import read_keras_config

    with pytest.raises(GradflowError, match="config.json inflates to"):
        read_keras_config(str(path))
