"""TorchScript archives are code: refused unless the caller trusts them.

Evidence (PyTorch's own words): the torch.jit.load documentation warns that malicious pickle data
can execute arbitrary code during it ("Only load data you trust"); PyTorch's SECURITY.md (PR
#152336) says to treat a TorchScript model as locally executable code from its provider; a
maintainer on PR #143403: "There is no safe mode for jit.load". The last test shows it here: an
archive's own __setstate__ runs inside torch.jit.load and changes what is read.

Refused: one GradflowError (CLI: one `gradflow: error:` line, exit 2) naming the opt-in, and
torch.jit.load never called. Trusted: the weights are the module's own tensors.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gradflow as gf
from gradflow._cli import main

torch = pytest.importorskip("torch")


def _script(module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    torch.manual_seed(0)
    mod = torch.nn.RNN(2, 3).double()
    return mod, _script(mod, tmp_path_factory.mktemp("ts") / "rnn.pt")


@pytest.fixture
def no_jit_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.jit.load was called on an untrusted archive")

    monkeypatch.setattr(torch.jit, "load", refuse)


def test_untrusted_archive_is_refused_before_torch_jit_load(archive, no_jit_load):
    _, path = archive
    for call in (lambda: gf.load_weights("tanh-rnn", path),
                 lambda: gf.network("tanh-rnn", weights=path),
                 lambda: gf.network("tanh-rnn", weights=str(path), trust_torchscript=False),
                 lambda: gf.stacked_network("tanh-rnn", weights=path)):
        with pytest.raises(gf.GradflowError, match=r"TorchScript archive.*can run the code.*trust_torchscript=True"):
            call()


def test_cli_refuses_in_one_line_naming_the_flag(archive, no_jit_load, capsys):
    _, path = archive
    assert main(["flow", "tanh-rnn", "--weights", str(path), "--steps", "3"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("gradflow: error: ") and err.count("\n") == 1
    assert "--trust-torchscript" in err and "Traceback" not in err


def test_trusted_archive_reads_the_modules_own_weights(archive, capsys):
    mod, path = archive
    with pytest.warns(gf._numeric.loading.GradflowNote, match="TorchScript archive"):
        w = gf.load_weights("tanh-rnn", path, trust_torchscript=True)
    np.testing.assert_array_equal(w.arrays["W"], mod.weight_hh_l0.detach().numpy())
    np.testing.assert_array_equal(w.arrays["U"], mod.weight_ih_l0.detach().numpy())
    with pytest.warns(gf._numeric.loading.GradflowNote):
        net = gf.stacked_network("tanh-rnn", weights=path, trust_torchscript=True)
    assert net.hidden == 3
    assert main(["flow", "tanh-rnn", "--trust-torchscript", "--weights", str(path), "--steps", "3", "--json",
                 "--no-lyapunov"]) == 0
    capsys.readouterr()
    with pytest.raises(gf.GradflowError, match="trust_torchscript must be True or False"):
        gf.load_weights("tanh-rnn", path, trust_torchscript="yes")


class _Sly(torch.nn.Module):
    """Its __setstate__, TorchScript code stored in the archive, runs during torch.jit.load."""

    def __init__(self):
        super().__init__()
        self.flag = torch.zeros(1, dtype=torch.float64)

    def forward(self, x):
        return x + self.flag

    @torch.jit.export
    def __getstate__(self):
        return (self.flag, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]):
        self.flag = state[0] + 42.0  # code of the file, run by loading it
        self.training = state[1]


def test_loading_an_archive_runs_its_code(tmp_path):
    path = _script(_Sly(), tmp_path / "sly.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path))
    assert float(loaded.flag) == 42.0  # saved as 0: the archive's __setstate__ ran at load
