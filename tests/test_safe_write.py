"""Issue 9: gradflow report never deletes what it did not write, and no path reaches TeX as markup.

Sizes are tiny (hidden 2, 3 steps, one cell) so that each report takes about a second. The one
real pdflatex run (the injection test) skips when pdflatex is missing, unless
GRADFLOW_REQUIRE_TEX=1, which makes a missing pdflatex a failure. Everything else about the PDF
step runs against a stand-in ``pdflatex`` script.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _fast_report import fake_build

import gradflow._views.report as R
from gradflow import write_report
from gradflow._checks import GradflowError
from gradflow._cli import main
from gradflow._cli.options import say
from gradflow._views.escape import md_code_block, tex_chars
from gradflow._views.report import compile_pdf
from gradflow._views.safe_write import LOCK, MANIFEST, STAGE_PREFIX, Target

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


REAL_BUILD = ("test_injected_path_stays_text_in_markdown_and_latex",)
FAST = [sys.executable, str(ROOT / "tests" / "_fast_report.py")]


@pytest.fixture(autouse=True)
def fast_build(request, monkeypatch):
    """Every test here writes stand-in reports, except the two that check the real documents."""
    if request.node.name not in REAL_BUILD:
        monkeypatch.setattr(R, "_build", fake_build)


def _small(out, **kw):
    return write_report("tanh-rnn", out, hidden=2, steps=3, **kw)


def _tree(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): (p.read_bytes().decode("latin-1") if p.is_file() else None)
            for p in sorted(d.rglob("*"))}


def _project(d: Path) -> dict:
    (d / ".git").mkdir(parents=True)
    (d / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (d / "src").mkdir()
    (d / "src" / "main.py").write_text("print('hi')\n")
    (d / "thesis.tex").write_text("\\documentclass{article}\n")
    return _tree(d)


# -- ownership ------------------------------------------------------------------------------------
def test_force_refuses_a_folder_with_files_it_did_not_write(tmp_path):
    proj = tmp_path / "proj"
    _project(proj)
    (proj / "report.md").write_text("my own notes\n")
    before = _tree(proj)
    with pytest.raises(GradflowError) as e:
        _small(proj, force=True)
    assert str(e.value) == (
        f"{proj} is not empty and holds files gradflow did not write: .git/, report.md, src/, thesis.tex "
        "(its report.md was not written by gradflow: there is no .gradflow-manifest.json); nothing was "
        "changed; choose a new or empty directory")
    assert _tree(proj) == before


def test_force_in_the_current_directory_keeps_it(tmp_path, monkeypatch, capsys):
    proj = tmp_path / "proj"
    before = _project(proj)
    monkeypatch.chdir(proj)
    assert main(["report", "tanh-rnn", "-o", ".", "--hidden", "2", "--steps", "3", "--force"]) == 2
    assert "holds files gradflow did not write" in capsys.readouterr().err
    assert _tree(proj) == before


def test_force_replaces_only_the_reports_own_files(tmp_path):
    out = _small(tmp_path / "rep")
    manifest = json.loads((out / MANIFEST).read_text())["files"]
    assert "report.md" in manifest and "figures/decay.png" in manifest
    assert sorted(manifest) == sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                                      if p.is_file() and p.name != MANIFEST)
    _project(out)  # the user puts the report under version control, adds code
    extra = {k: v for k, v in _tree(out).items() if k.split("/")[0] in (".git", "src", "thesis.tex")}
    (out / "figures" / "mine.svg").write_text("<svg/>")
    (out / "figures" / "decay.png").write_bytes(b"old figure")
    _small(out, force=True, seed=3)
    now = _tree(out)
    for k, v in extra.items():
        assert now[k] == v
    assert now["figures/mine.svg"] == "<svg/>"
    assert (out / "figures" / "decay.png").read_bytes() == b"\x89PNG fake 3"
    assert json.loads((out / "provenance.json").read_text())["seed"] == 3
    assert not [p for p in out.iterdir() if p.name in (LOCK,) or p.name.startswith(STAGE_PREFIX)]


def test_a_report_from_before_manifests_is_recognised(tmp_path):
    out = _small(tmp_path / "old")
    (out / MANIFEST).unlink()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(GradflowError, match="already contains a report; use --force"):
        _small(out)
    _small(out, force=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / MANIFEST).is_file()


def test_a_file_created_during_the_build_survives(tmp_path, monkeypatch):
    out = tmp_path / "new"
    def meanwhile(*a, **k):
        (out / "draft.txt").write_text("written while gradflow was busy")
        return fake_build(*a, **k)

    monkeypatch.setattr(R, "_build", meanwhile)
    with pytest.raises(GradflowError) as e:
        _small(out)
    assert str(e.value) == (f"{out} changed while the report was being built (draft.txt appeared); the "
                            "report was not installed and nothing there was changed")
    assert _tree(out) == {"draft.txt": "written while gradflow was busy"}


def test_failed_run_removes_only_the_parents_it_created(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(R, "_build", boom)
    (tmp_path / "a").mkdir()
    with pytest.raises(RuntimeError):
        _small(tmp_path / "a" / "b" / "c" / "rep")
    assert _tree(tmp_path) == {"a": None}


# -- locking --------------------------------------------------------------------------------------
def test_a_second_run_is_refused_while_the_first_holds_the_lock(tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    t = Target(out, force=False)
    t._lock()
    try:
        with pytest.raises(GradflowError) as e:
            _small(out)
        assert str(e.value) == (f"another gradflow run (process {os.getpid()}) is writing a report to {out}; "
                                "wait for it to finish or choose another directory")
    finally:
        t._unlock()
    assert _tree(out) == {}
    (out / LOCK).write_text("12345\n")  # left by a killed run: no process holds it
    _small(out)
    assert not (out / LOCK).exists()


def test_two_concurrent_runs_exactly_one_succeeds(tmp_path):
    out = tmp_path / "both"
    cmd = [*FAST, "0.3", "report", "tanh-rnn", "-o", str(out), "--hidden", "2", "--steps", "3"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(c for c, _ in results)
    assert codes == [0, 2], results
    err = next(e for c, e in results if c == 2)
    assert err.count("\n") == 1 and err.startswith("gradflow: error: ")
    assert ("another gradflow run" in err) or ("already contains a report" in err)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [MANIFEST]


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"),
                                            (signal.SIGINT, 130, "interrupted")])
def test_signals_clean_up_stage_lock_and_created_folders(tmp_path, sig, code, word):
    out = tmp_path / "parent" / "rep"
    proc = subprocess.Popen([*FAST, "60", "report", "lstm", "-o", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and any(p.name.startswith(STAGE_PREFIX) for p in out.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert stderr == f"gradflow: {word}; no half-written report was left\n"
    assert _tree(tmp_path) == {}


# -- permissions and links, before the build ------------------------------------------------------
def test_links_and_permissions_are_checked_before_the_build(tmp_path, monkeypatch):
    def never(*a, **k):
        raise AssertionError("the build must not start")

    monkeypatch.setattr(R, "_build", never)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(GradflowError) as e:
        _small(tmp_path / "dangling")
    assert str(e.value) == (f"cannot write the report to {tmp_path / 'dangling'}: it is a symbolic link to "
                            f"{tmp_path / 'nowhere'}, which does not exist")
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(GradflowError, match="is not writable"):
                _small(ro)
        finally:
            ro.chmod(0o700)


def test_force_through_a_symlink_keeps_the_link(tmp_path):
    real = _small(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real)
    _small(link, force=True, seed=5)
    assert link.is_symlink()
    assert json.loads((real / "provenance.json").read_text())["seed"] == 5


# -- LaTeX and Markdown -----------------------------------------------------------------------------
INJECT = "\\end{verbatim}\\input{SECRET}\\begin{verbatim}"


def test_escaping_helpers():
    assert tex_chars("a\\b{c}$d&e#f^g_h%i~j") == ("a\\textbackslash{}b\\{c\\}\\$d\\&e\\#f"
                                                  "\\textasciicircum{}g\\_h\\%i\\textasciitilde{}j")
    assert "\\input" not in tex_chars(INJECT)
    block = md_code_block("x ```` y")
    assert block.startswith("`````sh\n") and block.endswith("\n`````")


@pytest.fixture(scope="module")
def injected(tmp_path_factory):
    """One real report whose path tries to leave the code block, to \\input a secret file."""
    d = tmp_path_factory.mktemp("inj")
    secret = d / "secret.txt"
    secret.write_text("TOPSECRETMARKER\n")
    out = d / ("r" + INJECT.replace("SECRET", str(secret)) + "```\n# heading")
    # the path as typed on a command line (the report names no absolute path it was not given)
    write_report("tanh-rnn", out, hidden=2, steps=3, command=["gradflow", "report", "tanh-rnn", "-o", str(out)])
    return out, secret


def test_injected_path_stays_text_in_markdown_and_latex(injected):
    out, _ = injected
    assert (out / "report.tex").read_text().count("\\input{") == 1  # \input{report-body}, nothing else
    tex = (out / "report-body.tex").read_text()
    assert "\\input{" not in tex and "\\end{verbatim}\\input" not in tex
    # the reproduce command names the folder by its last component (no absolute path): what of the
    # injection is left in it is text
    assert "{\\char92}begin\\{verbatim\\}" in tex.replace("\\allowbreak{}", "")  # cmtt's own backslash
    md = (out / "report.md").read_text()
    fence = next(line for line in md.splitlines() if line.startswith("```") and line.endswith("sh"))
    assert fence == "````sh"  # longer than the ``` in the path
    block = md.split(fence + "\n")[1].split("\n" + fence[:-2] + "\n")[0]
    assert "\n# heading" in block  # the path's "heading" stays inside the code block


def _need_pdflatex() -> None:
    if shutil.which("pdflatex") is None:
        if os.environ.get("GRADFLOW_REQUIRE_TEX") == "1":
            pytest.fail("pdflatex is not installed but GRADFLOW_REQUIRE_TEX=1")
        pytest.skip("pdflatex is not installed (set GRADFLOW_REQUIRE_TEX=1 to make this a failure)")


def test_pdf_of_an_injected_path_holds_no_file_contents(injected):
    _need_pdflatex()
    out, secret = injected
    pdf = compile_pdf(out)
    assert pdf == out / "report.pdf" and pdf.is_file()
    assert not (out / "report.log").exists()  # only the PDF is added to the report
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
        assert "TOPSECRETMARKER" not in text and "begin{verbatim}" in text  # the path printed as text
    manifest = json.loads((out / MANIFEST).read_text())["files"]
    assert "report.pdf" in manifest and "report.log" not in manifest and "report.aux" not in manifest
    assert not (out / "report.aux").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(STAGE_PREFIX) or p.name == LOCK]


def _fake_pdflatex(tmp_path: Path, ok: bool) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "pdflatex"
    body = ('printf "%s\\n" "$*" > report.log; echo "openin_any=$openin_any" >> report.log\n'
            + ('printf "%%PDF-1.5 fake" > report.pdf\n' if ok else 'echo "! Simulated error." >> report.log; exit 1\n'))
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)


def test_pdf_step_is_atomic_and_runs_without_shell_escape(tmp_path, monkeypatch, capsys):
    _fake_pdflatex(tmp_path, ok=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + os.environ["PATH"])
    out = tmp_path / "rep"
    assert main(["report", "tanh-rnn", "-o", str(out), "--hidden", "2", "--steps", "3", "--pdf"]) == 2
    err = capsys.readouterr().err
    assert err == (f"gradflow: error: pdflatex failed on {out / 'report.tex'}: Simulated error. "
                   f"(see {out / 'report.log'})\n")
    assert not (out / "report.pdf").exists() and (out / "report.md").is_file()
    log = (out / "report.log").read_text()
    assert log.startswith("-no-shell-escape ") and "openin_any=p" in log
    assert not [p for p in out.iterdir() if p.name.startswith(STAGE_PREFIX) or p.name == LOCK]

    _fake_pdflatex(tmp_path, ok=True)
    assert main(["report", "tanh-rnn", "-o", str(out), "--hidden", "2", "--steps", "3", "--pdf",
                 "--force"]) == 0
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")


def test_pdf_is_written_when_the_reader_of_stdout_left(tmp_path):
    _fake_pdflatex(tmp_path, ok=True)
    env = {**ENV, "PATH": str(tmp_path / "bin") + os.pathsep + os.environ["PATH"]}
    out = tmp_path / "rep"
    proc = subprocess.run(f"{' '.join(FAST)} 0 report tanh-rnn -o {out} --hidden 2 --steps 3 "
                          "--pdf | true", shell=True, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.pdf").is_file()


def test_broken_pipe_on_an_informational_line_does_not_stop_the_work(monkeypatch):
    class Gone:
        def write(self, s):
            raise BrokenPipeError

        def flush(self):
            raise BrokenPipeError

    monkeypatch.setattr(sys, "stdout", Gone())
    say("wrote something")
    say("and more")  # still running; stdout now discards
    assert not isinstance(sys.stdout, Gone)


# -- standard output ------------------------------------------------------------------------------
@pytest.mark.parametrize("redirect, code, message", [
    (">/dev/full", 1, "gradflow: error: cannot write to standard output: No space left on device\n"),
    (">&-", 2, "gradflow: error: standard output is closed; redirect it (e.g. >/dev/null) instead\n"),
])
def test_stdout_full_or_closed_is_one_line(redirect, code, message):
    if redirect == ">/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    proc = subprocess.run(f"{sys.executable} -m gradflow cite {redirect}", shell=True, env=ENV,
                          capture_output=False, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == code
    assert proc.stderr == message
