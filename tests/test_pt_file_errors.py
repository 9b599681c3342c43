"""A corrupt or non-checkpoint .pt file: one ``gradflow: error:`` line (exit 2), the same text
from the API, never torch's advice to load with ``weights_only=False`` (which runs pickled code),
and nothing in the file executed. Oracles: the files are built here with torch.save/pickle; a
pickle that would create a file when unpickled shows whether anything ran."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gradflow import GradflowError, network  # noqa: E402
from gradflow._cli import main  # noqa: E402

UNSAFE = ("weights_only", "arbitrary code", "trust", "Traceback")


class Runs:
    """Unpickling this opens (creates) ``path``: it would prove that pickled code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def files(tmp_path) -> dict:
    good, legacy = tmp_path / "good.pt", tmp_path / "legacy.pt"
    torch.save(torch.nn.LSTM(2, 3).state_dict(), good)
    torch.save(torch.nn.LSTM(2, 3).state_dict(), legacy, _use_new_zipfile_serialization=False)
    out = {"empty": b"", "random": np.random.default_rng(0).bytes(4096),
           "truncated": good.read_bytes()[:len(good.read_bytes()) // 2],
           "truncated-legacy": legacy.read_bytes()[:len(legacy.read_bytes()) // 2],
           "legacy-magic-then-junk": legacy.read_bytes()[:15] + np.random.default_rng(1).bytes(300),
           "pickle-of-a-class": pickle.dumps(Runs(tmp_path / "RAN")),
           "pickle-of-a-dict": pickle.dumps({"weight_ih_l0": np.zeros((12, 2))})}
    bad_pkl = tmp_path / "bad_pkl.pt"  # a well-formed zip whose data.pkl is noise
    with zipfile.ZipFile(good) as z, zipfile.ZipFile(bad_pkl, "w") as w:
        for info in z.infolist():
            data = z.read(info.filename)
            w.writestr(info, np.random.default_rng(2).bytes(len(data)) if info.filename.endswith("data.pkl") else data)
    paths = {name: tmp_path / f"{name}.pt" for name in out}
    for name, data in out.items():
        paths[name].write_bytes(data)
    paths["zip-with-noise-as-data.pkl"] = bad_pkl
    torch.save(Runs(tmp_path / "RAN"), tmp_path / "class-torch.pt")  # torch.save of an object
    paths["torch.save-of-a-class"] = tmp_path / "class-torch.pt"
    return paths


def test_bad_pt_files_are_one_safe_line(tmp_path, capsys):
    for name, path in files(tmp_path).items():
        assert main(["flow", "lstm", "--weights", str(path), "--steps", "3"]) == 2, name
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"gradflow: error: weights file {path} "), (name, err)
        assert not any(w.lower() in err.lower() for w in UNSAFE), (name, err)
        with pytest.raises(GradflowError) as e:
            network("lstm", weights=str(path))
        assert str(e.value) == lines[0].removeprefix("gradflow: error: "), name
    assert not (tmp_path / "RAN").exists()  # nothing pickled ran


def test_the_words_name_what_is_wrong(tmp_path, capsys):
    p = files(tmp_path)
    want = {"empty": "is empty", "random": "is not a readable PyTorch file: neither",
            "pickle-of-a-class": "is not a readable PyTorch file: neither", "truncated": "truncated or corrupt",
            "truncated-legacy": "truncated or corrupt", "torch.save-of-a-class": "holds pickled Python objects"}
    for name, words in want.items():
        with pytest.raises(GradflowError, match=words):
            network("lstm", weights=str(p[name]))


def test_good_files_still_load_both_formats(tmp_path):
    from gradflow import to_state_dict

    torch.manual_seed(0)
    mod = torch.nn.LSTM(2, 3).double()
    for i, new in enumerate((True, False)):  # the zip archive and the older format
        path = tmp_path / f"w{i}.pt"
        torch.save(mod.state_dict(), path, _use_new_zipfile_serialization=new)
        got = to_state_dict(network("lstm", weights=str(path)).weights)
        for key in ("weight_ih", "weight_hh"):
            np.testing.assert_array_equal(np.asarray(got[key]), getattr(mod, f"{key}_l0").detach().numpy())


def test_broadcast_tensors_are_sized_before_they_are_copied(tmp_path, capsys):
    """A stride-0 (expanded) tensor stores one entry but declares many: one declaring 58 TiB is
    refused in one line before any copy; a small one is read with torch.load's values."""
    z = lambda *s: torch.zeros(1, dtype=torch.float64).expand(*s)  # noqa: E731
    n = m = 10**6
    bomb = tmp_path / "bomb.pt"
    torch.save({"weight_ih_l0": z(4 * n, m), "weight_hh_l0": z(4 * n, n), "bias_ih_l0": z(4 * n),
                "bias_hh_l0": z(4 * n)}, bomb)
    assert main(["flow", "lstm", "--hidden", "3", "--input", "2", "--steps", "4", "--weights", str(bomb)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "declares" in err[0] and "TiB" in err[0], err
    from gradflow._numeric.loading import read_pt

    small = tmp_path / "small.pt"
    lstm = torch.nn.LSTM(2, 3).double()
    state = {k: v.detach().clone() for k, v in lstm.state_dict().items()}
    state["bias_hh_l0"] = torch.full((1,), 0.25, dtype=torch.float64).expand(12)
    torch.save(state, small)
    got = read_pt(str(small))
    for k, v in state.items():
        assert np.array_equal(np.asarray(got[k]), v.numpy()), k
