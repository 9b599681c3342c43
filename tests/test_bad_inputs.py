"""Issue 9: every bad input is one line ``gradflow: error: …`` and exit 2 (CLI), a GradflowError (API).

The table below lists each bad file or option with the exact line the command prints. The files
are made here, in a temporary folder, by the means a user would have used (torch.save, np.save,
np.savez, renaming, truncating, flipping a byte).
"""

from __future__ import annotations

import os
import warnings
import zipfile

import numpy as np
import pytest

from gradflow import load_weights, network
from gradflow._checks import GradflowError
from gradflow._cli import main
from gradflow._numeric.loading import GradflowNote
from gradflow._numeric.weights import from_state_dict

torch = pytest.importorskip("torch")

SAVE_SD = "save the weights with torch.save(module.state_dict(), PATH)"
REAL = "gradflow needs real numbers"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    torch.manual_seed(0)
    m = torch.nn.RNN(2, 3)
    sd = m.state_dict()
    torch.save(sd, d / "ok.pt")
    np.savez(d / "ok.npz", **{k: v.numpy() for k, v in sd.items()})
    (d / "empty.pt").write_bytes(b"")
    (d / "empty.npz").write_bytes(b"")
    raw = (d / "ok.pt").read_bytes()
    (d / "trunc.pt").write_bytes(raw[: len(raw) // 2])
    rawz = (d / "ok.npz").read_bytes()
    (d / "trunc.npz").write_bytes(rawz[: len(rawz) // 2])
    for src, dst, member in (("ok.npz", "crc.npz", "weight_hh_l0.npy"), ("ok.pt", "crc.pt", "ok/data/1")):
        b = bytearray((d / src).read_bytes())
        info = zipfile.ZipFile(d / src).getinfo(member)
        with open(d / src, "rb") as f:  # the data start: after the local header and its extra field
            f.seek(info.header_offset + 26)
            name_len, extra_len = np.frombuffer(f.read(4), "<u2")
        b[info.header_offset + 30 + int(name_len) + int(extra_len) + info.compress_size - 3] ^= 0xFF
        (d / dst).write_bytes(bytes(b))
    np.save(d / "arr.npy", np.zeros((3, 2)))
    os.rename(d / "arr.npy", d / "renamed.npz")
    torch.save(torch.zeros(3), d / "tensor.pt")
    torch.save([torch.zeros(3)], d / "list.pt")
    torch.save({0: torch.zeros(3)}, d / "intkeys.pt")
    torch.save(m, d / "module.pt")
    with warnings.catch_warnings():  # torch.jit is deprecated, but users still have such archives
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(m).save(str(d / "script.pt"))
    torch.save({k: v.to(torch.bfloat16) for k, v in sd.items()}, d / "bf16.pt")
    torch.save({k: v.to(torch.float16) for k, v in sd.items()}, d / "f16.pt")
    np.savez(d / "complex.npz", **{k: v.numpy().astype(complex) for k, v in sd.items()})
    np.savez(d / "bool.npz", **{k: v.numpy() > 0 for k, v in sd.items()})
    torch.save({**sd, "weight_ih": sd["weight_ih_l0"]}, d / "both.pt")
    np.save(d / "x.npy", np.zeros((4, 2)))
    np.save(d / "xs.npy", np.array([["a", "b"]] * 4))
    np.save(d / "xnum.npy", np.array([["1", "2"]] * 4))
    np.save(d / "xc.npy", np.zeros((4, 2), complex))
    np.save(d / "xdt.npy", np.zeros((4, 2), "datetime64[s]"))
    np.save(d / "xb.npy", np.zeros((4, 2), bool))
    xraw = (d / "x.npy").read_bytes()
    (d / "xtrunc.npy").write_bytes(xraw[:-8])
    os.symlink(d / "nowhere.pt", d / "dangling.pt")
    return d


def _w(name):
    return ["flow", "tanh-rnn", "--weights", name, "--steps", "3"]


def _x(name):
    return ["flow", "tanh-rnn", "--hidden", "3", "--inputs", name]


BAD = [
    (_w("empty.pt"), "weights file {d}/empty.pt is empty"),
    (_w("empty.npz"), "weights file {d}/empty.npz is empty"),
    (_w("missing.pt"), "weights file not found: {d}/missing.pt"),
    (_w("dangling.pt"), "weights file {d}/dangling.pt is a symbolic link to {d}/nowhere.pt, which does not exist"),
    (_w("trunc.pt"), "weights file {d}/trunc.pt is not a readable PyTorch file (truncated or corrupt: "
                     "File is not a zip file)"),
    (_w("trunc.npz"), "weights file {d}/trunc.npz is not a readable .npz archive (truncated or corrupt: "
                      "File is not a zip file)"),
    (_w("crc.npz"), "weights file {d}/crc.npz: member weight_hh_l0 is corrupt "
                    "(Bad CRC-32 for file 'weight_hh_l0.npy')"),
    (_w("crc.pt"), "weights file {d}/crc.pt is corrupt: member ok/data/1 fails its CRC check"),
    (_w("renamed.npz"), "weights file {d}/renamed.npz is a single .npy array, not an .npz archive of named "
                        "arrays; save the weights with np.savez(PATH, weight_ih=..., weight_hh=..., ...)"),
    (_w("tensor.pt"), "weights file {d}/tensor.pt holds a single tensor of shape (3,), not a state_dict "
                      "(a dict of named tensors); " + SAVE_SD),
    (_w("list.pt"), "weights file {d}/list.pt holds a list of 1 items, not a state_dict (a dict of named "
                    "tensors); " + SAVE_SD),
    (_w("intkeys.pt"), "weights file {d}/intkeys.pt is a dict whose keys are not all parameter names "
                       "(e.g. 0); " + SAVE_SD),
    (_w("module.pt"), "weights file {d}/module.pt holds pickled Python objects (such as "
                      "torch.nn.modules.rnn.RNN), probably a whole module saved with torch.save(module); "
                      "gradflow does not unpickle code; " + SAVE_SD),
    (_w("complex.npz"), "weights file {d}/complex.npz: member weight_ih_l0 holds complex numbers (dtype "
                        "complex128); " + REAL + " (take .real or abs() explicitly if that is what you mean)"),
    (_w("bool.npz"), "weights file {d}/bool.npz: member weight_ih_l0 holds booleans (dtype bool); " + REAL),
    (_w("both.pt"), "weights file {d}/both.pt has both weight_ih and weight_ih_l0; keep one (gradflow "
                    "would have to guess which is meant)"),
    (_x("ok.npz"), "inputs file {d}/ok.npz is an .npz archive; inputs must be one array saved with np.save (.npy)"),
    (_x("ok.pt"), "inputs file {d}/ok.pt is a PyTorch file; inputs must be one array saved with np.save (.npy)"),
    (_x("xs.npy"), "inputs file {d}/xs.npy holds strings (dtype <U1); " + REAL),
    (_x("xnum.npy"), "inputs file {d}/xnum.npy holds strings (dtype <U1); " + REAL),
    (_x("xc.npy"), "inputs file {d}/xc.npy holds complex numbers (dtype complex128); " + REAL
                   + " (take .real or abs() explicitly if that is what you mean)"),
    (_x("xdt.npy"), "inputs file {d}/xdt.npy holds dates (dtype datetime64[s]); " + REAL),
    (_x("xb.npy"), "inputs file {d}/xb.npy holds booleans (dtype bool); " + REAL),
    (_x("xtrunc.npy"), "inputs file {d}/xtrunc.npy is truncated: it declares shape (4, 2) (64 bytes) but "
                       "holds 56 bytes of data"),
    (["flow", "tanh-rnn", "--hidden", "1_6", "--input", "2", "--steps", "3"], "--hidden must be an integer, got '1_6'"),
    (["flow", "tanh-rnn", "--hidden", "16", "--input", "2", "--steps", "1e3"], "--steps must be an integer, got '1e3'"),
    (["flow", "tanh-rnn", "--hidden", "4", "--input", "2", "--steps", "3", "--gain", "1_0"],
     "--gain must be a number in plain digits, got '1_0'"),
    (["report", "tanh-rnn", "-o", "{d}/r", "--hidden", "1_6"], "--hidden must be an integer, got '1_6'"),
    ([*_x("x.npy"), "--batch", "2"], "--batch has no effect with --inputs: the batch is the second axis of {d}/x.npy"),
    ([*_w("ok.pt"), "--init", "glorot"], "--init has no effect with --weights: the weights come from {d}/ok.pt"),
    ([*_w("ok.pt"), "--gain", "2"], "--gain has no effect with --weights: the weights come from {d}/ok.pt"),
    (["flow", "tanh-rnn", "--weights", "ok.pt", "--inputs", "x.npy", "--seed", "3"],
     "--seed has no effect with both --weights and --inputs: nothing is random"),
]


def _abs(argv, d):
    out = []
    for a in argv:
        a = a.replace("{d}", str(d))
        if a.endswith((".pt", ".npz", ".npy")) and "/" not in a:
            a = str(d / a)
        out.append(a)
    return out


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a[2:]) for a, _ in BAD])
def test_bad_input_table(files, capsys, argv, message):
    assert main(_abs(argv, files)) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err == f"gradflow: error: {message.replace('{d}', str(files))}\n"


def test_table_size():
    assert len(BAD) >= 30


@pytest.mark.parametrize("name", ["empty.pt", "trunc.pt", "trunc.npz", "crc.npz", "crc.pt", "renamed.npz",
                                  "tensor.pt", "list.pt", "intkeys.pt", "module.pt", "complex.npz",
                                  "bool.npz", "both.pt", "dangling.pt"])
def test_api_raises_gradflow_error(files, name):
    with pytest.raises(GradflowError):
        load_weights("tanh-rnn", files / name)


def test_api_refuses_silent_coercions():
    sd = {"weight_ih": np.zeros((3, 2), complex), "weight_hh": np.zeros((3, 3))}
    with pytest.raises(GradflowError, match=r"tanh-rnn: weight_ih holds complex numbers"):
        from_state_dict("tanh-rnn", sd)
    with pytest.raises(GradflowError, match="has both weight_hh and weight_hh_l0"):
        from_state_dict("tanh-rnn", {"weight_ih": np.zeros((3, 2)), "weight_hh": np.zeros((3, 3)),
                                     "weight_hh_l0": np.zeros((3, 3))})
    net = network("tanh-rnn", 3, 2)
    for bad, what in ((np.zeros((4, 2), complex), "complex"), (np.zeros((4, 2), bool), "booleans"),
                      (np.array([["1", "2"]] * 4), "strings"), ([["a", "b"]] * 4, "strings"),
                      (np.zeros((4, 2), "datetime64[s]"), "dates")):
        with pytest.raises(GradflowError, match=what):
            net.check_inputs(bad)
    with pytest.raises(GradflowError, match="holds complex"):
        net.check_inputs(torch.zeros(4, 2, dtype=torch.complex64))


def test_legitimate_files_load_with_a_note(files, capsys):
    ref = load_weights("tanh-rnn", files / "ok.pt")
    for name, note in (("script.pt", "is a TorchScript archive; its state_dict was read"),
                       ("bf16.pt", "gradflow: note: tanh-rnn: the weights are bfloat16; converted to float64\n"),
                       ("f16.pt", "gradflow: note: tanh-rnn: the weights are float16; converted to float64\n")):
        assert main(["flow", "tanh-rnn", "--weights", str(files / name), "--steps", "3", "--json",
                     "--no-lyapunov", "--trust-torchscript"]) == 0
        err = capsys.readouterr().err  # besides: the note that a state_dict has no nonlinearity
        err = "".join(x for x in err.splitlines(True) if "does not record nn.RNN's nonlinearity" not in x)
        assert "gradflow: note: " in err and note in err and err.count("\n") == 1, err
    with pytest.warns(GradflowNote, match="TorchScript archive"):
        w = load_weights("tanh-rnn", files / "script.pt", trust_torchscript=True)
    np.testing.assert_array_equal(w.arrays["W"], ref.arrays["W"])
    with pytest.warns(GradflowNote, match="the weights are bfloat16; converted to float64"):
        w16 = load_weights("tanh-rnn", files / "bf16.pt")
    np.testing.assert_allclose(w16.arrays["W"], ref.arrays["W"], rtol=1e-2, atol=1e-2)
    assert w16.arrays["W"].dtype == np.float64
