"""Writing a report directory without ever deleting what gradflow did not write.

The rules, in the order a run meets them:

* **Before the build** (:func:`check_target`, no side effects): the path is not the root, not a
  dangling symbolic link, not a file; the directory (or its nearest existing ancestor) is
  writable; and the directory is new, empty, or holds a gradflow report (``force`` needed to
  replace it). A directory that holds files gradflow did not write is refused, naming them,
  unless it also holds a gradflow report, whose own files alone ``force`` replaces.
* **Ownership** is the manifest ``.gradflow-manifest.json`` that every report writes: the
  relative paths of its files. A report written before manifests existed is recognised by its
  ``provenance.json`` (a ``gradflow report`` command) and owns only the files gradflow writes.
* **During the build** (:class:`Target`): missing parents are created one by one and remembered,
  the directory is locked (``.gradflow.lock``, ``flock``; a second run is refused at once), the
  report is staged in a hidden ``.gradflow-stage-*`` folder inside it, and SIGTERM is turned
  into an exception so that the stage, the lock and the created parents are cleaned up as on
  any failure (SIGINT already is one).
* **At install time** the directory is checked again: if anything appeared in it during the
  build, nothing is installed. Otherwise the staged files replace the old report's files one by
  one (``os.replace``), old report files that the new report lacks are removed, and everything
  else in the directory is left as it was.
* **The PDF** is compiled in its own stage (a copy of ``report.tex``, ``report-body.tex``,
  ``references.bib`` and the figures) with shell escape off and TeX's file access restricted to
  that folder; only ``report.pdf`` is moved into the report (``report.log`` instead when the
  compilation fails); the .aux/.log/.out/.bbl/.blg files go with the work folder.

This module is about files only; it knows nothing of what a report contains.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from .._checks import GradflowError, check_not_in_package

MANIFEST = ".gradflow-manifest.json"
LOCK = ".gradflow.lock"
STAGE_PREFIX = ".gradflow-stage-"
#: the files a gradflow report (of any version) writes at its top level
REPORT_FILES = ("report.md", "report.tex", "report.pdf", "report.log", "report.aux", "report.out",
                "references.bib", "flows.json", "provenance.json", "report-body.tex", "report.bbl",
                "report.blg", "slides.tex", "slides.pdf", "slides.log")
#: names whose presence makes a directory look like a report
MARKERS = ("report.md", "report.tex", "provenance.json")


class Interrupted(BaseException):
    """SIGTERM arrived during a build (raised so that the cleanup runs; the CLI exits 143)."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


# ================================================================================================
# Ownership
# ================================================================================================


def _listing(out: Path, owned: set[str] | None = None) -> set[str]:
    """The entries of ``out`` (relative, POSIX; dirs end in '/'), our lock and stages left out.

    Only directories that hold files of the report (``owned``) are listed inside; any other
    directory (``.git/``, ``src/``) is one entry, however large.
    """
    descend = {f.split("/")[0] for f in owned or () if "/" in f}
    found: set[str] = set()
    try:
        top = list(os.scandir(out))
    except OSError as e:
        raise GradflowError(f"cannot read the output directory {out}: {e.strerror or e}") from None
    for entry in top:
        if entry.name == LOCK or entry.name.startswith(STAGE_PREFIX):
            continue
        if entry.is_dir(follow_symlinks=False):
            found.add(entry.name + "/")
            if entry.name not in descend:
                continue
            for root, dirs, files in os.walk(entry.path):
                rel = Path(root).relative_to(out).as_posix()
                found.update(f"{rel}/{d}/" for d in dirs)
                found.update(f"{rel}/{f}" for f in files)
        else:
            found.add(entry.name)
    return found


def owned_files(out: Path) -> set[str] | None:
    """The files of the gradflow report in ``out`` (relative paths), or None if it holds none."""
    man = out / MANIFEST
    if man.is_file() and not man.is_symlink():
        try:
            data = json.loads(man.read_text(encoding="utf-8"))
            files = data["files"]
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise TypeError
        except (OSError, ValueError, KeyError, TypeError):
            raise GradflowError(f"{man} is unreadable or not a gradflow manifest; move it away or "
                                "choose another directory") from None
        return {f for f in files if _safe_relative(f)} | {MANIFEST}
    prov = out / "provenance.json"  # a report from before manifests: its own files only
    if prov.is_file() and not prov.is_symlink():
        try:
            data = json.loads(prov.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not str(data.get("canonical_command", "")).startswith(
                "gradflow report"):
            return None
        files = {f for f in REPORT_FILES if (out / f).is_file()}
        figs = data.get("figures") or {}
        if isinstance(figs, dict):
            files |= {p for paths in figs.values() if isinstance(paths, list) for p in paths
                      if isinstance(p, str) and p.startswith("figures/") and _safe_relative(p)}
        return files
    return None


def _safe_relative(p: str) -> bool:
    parts = p.split("/")
    return bool(p) and not p.startswith("/") and ".." not in parts and "" not in parts


def _foreign(listing: set[str], owned: set[str]) -> list[str]:
    """Paths in ``listing`` that are not the report's files nor directories holding only them."""
    owned_dirs = {"/".join(f.split("/")[:i]) + "/" for f in owned for i in range(1, f.count("/") + 1)}
    out = []
    for p in sorted(listing):
        if p in owned or p in owned_dirs:
            continue
        parent = p.rstrip("/").rpartition("/")[0]
        if parent and parent + "/" not in owned_dirs:
            continue  # inside a foreign directory: the directory is named instead
        out.append(p)
    return out


def _names(paths: list[str], limit: int = 6) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


# ================================================================================================
# Before the build
# ================================================================================================


def check_target(out_dir, force: bool) -> Path:
    """The absolute report directory, or :class:`GradflowError` saying why it must not be written."""
    if out_dir is None or str(out_dir).strip() == "":
        raise GradflowError("no output directory given")
    if "\0" in str(out_dir):
        raise GradflowError("the output directory name contains a NUL character")
    out = Path(os.path.abspath(os.path.expanduser(str(out_dir))))
    check_not_in_package(str(out), "the output directory")
    if out.parent == out:
        raise GradflowError(f"cannot write a report to the root directory {out}")
    if out.is_symlink() and not out.exists():
        raise GradflowError(f"cannot write the report to {out}: it is a symbolic link to "
                            f"{os.readlink(out)}, which does not exist")
    if out.exists() and not out.is_dir():
        raise GradflowError(f"cannot write the report to {out}: it exists and is not a directory")
    anc = out
    while not os.path.lexists(anc):
        anc = anc.parent
    if not anc.is_dir():
        raise GradflowError(f"cannot create the output directory {out}: {anc} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise GradflowError(f"cannot write the report to {out}: {anc} is not writable")
    if out.is_dir():
        _check_contents(out, force)
    return out


def _check_contents(out: Path, force: bool) -> None:
    listing = _listing(out)
    if not listing:
        return
    owned = owned_files(out)
    if owned is not None:
        listing = _listing(out, owned)
    if owned is None:
        mine = [m for m in MARKERS if m in listing]
        what = (f" (its {', '.join(mine)} {'was' if len(mine) == 1 else 'were'} not written by "
                "gradflow: there is no .gradflow-manifest.json)") if mine else ""
        raise GradflowError(f"{out} is not empty and holds files gradflow did not write: "
                            f"{_names(_foreign(listing, set()))}{what}; nothing was changed; "
                            "choose a new or empty directory")
    if not force:
        raise GradflowError(f"{out} already contains a report; use --force to replace it")


# ================================================================================================
# During the build: lock, stage, signals, install
# ================================================================================================


@contextlib.contextmanager
def _terminate_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Interrupted` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class Target:
    """A locked report directory with a stage; see :func:`open_target`."""

    def __init__(self, out: Path, force: bool):
        self.out, self.force = out, force
        self.created: list[Path] = []
        self.stage: Path | None = None
        self._fd: int | None = None
        self._before: set[str] = set()
        self._owned: set[str] = set()
        self.installed = False

    # -- setup ----------------------------------------------------------------------------------
    def _make_dirs(self) -> None:
        missing = []
        p = self.out
        while not os.path.lexists(p):
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            try:
                os.mkdir(d)
                self.created.append(d)
            except FileExistsError:
                if not d.is_dir():
                    raise GradflowError(f"cannot create the output directory {self.out}: {d} "
                                        "appeared and is not a directory") from None
            except OSError as e:
                raise GradflowError(f"cannot create the output directory {self.out}: "
                                    f"{e.strerror or e}") from None

    def _lock(self) -> None:
        path = self.out / LOCK
        for _ in range(5):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as e:
                raise GradflowError(f"cannot lock {self.out}: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                try:
                    pid = os.read(fd, 32).decode("ascii", "replace").strip()
                finally:
                    os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    who = f" (process {pid})" if pid.isdigit() else ""
                    raise GradflowError(f"another gradflow run{who} is writing a report to {self.out}; "
                                        "wait for it to finish or choose another directory") from None
                raise GradflowError(f"cannot lock {self.out}: {e.strerror or e}") from None
            try:  # the file may have been unlinked by the run that released it: lock the current one
                same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return
            os.close(fd)
        raise GradflowError(f"cannot lock {self.out}: the lock file keeps changing")

    def _unlock(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.out / LOCK)
        os.close(self._fd)
        self._fd = None

    def _open(self) -> None:
        self._make_dirs()
        self._lock()
        # stale stages of killed runs are ours: the lock says no other run is using them
        for entry in os.scandir(self.out):
            if entry.name.startswith(STAGE_PREFIX) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
        _check_contents(self.out, self.force)  # again, now that no other run can change it
        self._owned = owned_files(self.out) or set()
        self._before = _listing(self.out, self._owned)
        self.stage = self.new_stage()

    def new_stage(self) -> Path:
        stage = self.out / f"{STAGE_PREFIX}{secrets.token_hex(4)}"
        try:
            stage.mkdir()
        except OSError as e:
            raise GradflowError(f"cannot write the report to {self.out}: {e.strerror or e}") from None
        return stage

    def _cleanup(self, failed: bool) -> None:
        held = self._fd is not None  # another run's stages are not ours to remove
        for entry in list(os.scandir(self.out)) if held and self.out.is_dir() else []:
            if entry.name.startswith(STAGE_PREFIX) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
        self._unlock()
        if failed and not self.installed:
            for d in reversed(self.created):
                try:
                    os.rmdir(d)  # only when empty: never removes anything else
                except OSError:
                    break

    # -- install --------------------------------------------------------------------------------
    def _write_manifest(self, files: set[str]) -> None:
        from .._version import __version__

        tmp = self.out / f"{MANIFEST}.{secrets.token_hex(4)}.tmp"
        body = {"gradflow": __version__,
                "note": "files written by gradflow report; --force replaces these and nothing else",
                "files": sorted(files - {MANIFEST})}
        tmp.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.out / MANIFEST)

    def install(self, stage: Path | None = None, *, replace_all: bool = True) -> None:
        """Move the staged files into the directory (see the module docstring)."""
        stage = stage or self.stage
        assert stage is not None
        now = _listing(self.out, self._owned)
        appeared = sorted(now - self._before)
        if appeared:
            raise GradflowError(f"{self.out} changed while the report was being built "
                                f"({_names(appeared)} appeared); the report was not installed and "
                                "nothing there was changed")
        new = {p.relative_to(stage).as_posix() for p in stage.rglob("*") if not p.is_dir()}
        clash = []
        for f in sorted(new):
            parts = f.split("/")
            for i in range(1, len(parts) + 1):
                sub = "/".join(parts[:i])
                path = self.out / sub
                if not os.path.lexists(path) or sub in self._owned:
                    continue
                if i < len(parts) and path.is_dir() and not path.is_symlink():
                    continue  # a directory the report may share (figures/)
                clash.append(sub)
                break
        if clash:
            raise GradflowError(f"the report would overwrite files in {self.out} that gradflow did "
                                f"not write: {_names(sorted(set(clash)))}; nothing was changed")
        self._write_manifest(self._owned | new)  # a crash from here on leaves every file owned
        for f in sorted(new):
            dst = self.out / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / f, dst)
        self.installed = True
        final = (self._owned | new) if not replace_all else new
        if replace_all:
            for f in sorted(self._owned - new - {MANIFEST}, reverse=True):
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    os.unlink(self.out / f)
            dirs = {"/".join(f.split("/")[:i]) for f in self._owned - new for i in range(1, f.count("/") + 1)}
            for d in sorted(dirs, key=len, reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(self.out / d)  # only when empty
        self._write_manifest(final)
        self._owned = final | {MANIFEST}
        self._before = _listing(self.out, self._owned)
        shutil.rmtree(stage, ignore_errors=True)

    # -- the PDF --------------------------------------------------------------------------------
    def compile_pdf(self, run: Callable[[Path], None], name: str = "report") -> Path:
        """Run ``run(folder)`` (pdflatex, bibtex) on a copy of NAME.tex, its inputs and the figures;
        install NAME.pdf alone (NAME.log alone if ``run`` fails)."""
        stage = self.new_stage()
        work = self.new_stage()
        for source in (f"{name}.tex", "report-body.tex", "references.bib"):
            if (self.out / source).is_file():
                shutil.copy2(self.out / source, work / source)
        if (self.out / "figures").is_dir():
            shutil.copytree(self.out / "figures", work / "figures", symlinks=True)
        keep = f"{name}.log"
        try:
            run(work)
            keep = f"{name}.pdf"
        finally:
            if (work / keep).is_file():
                os.replace(work / keep, stage / keep)
            shutil.rmtree(work, ignore_errors=True)
            if (stage / keep).exists():
                self.install(stage, replace_all=False)
        return self.out / f"{name}.pdf"


@contextlib.contextmanager
def open_target(out: Path, force: bool) -> Iterator[Target]:
    """Lock ``out`` (created if missing) and give a :class:`Target` with an empty stage."""
    tgt = Target(out, force)
    failed = True
    with _terminate_raises():
        try:
            tgt._open()
            yield tgt
            failed = False
        finally:
            tgt._cleanup(failed)


@contextlib.contextmanager
def locked_report(out: Path) -> Iterator[Target]:
    """Lock an existing report directory (for compiling its PDF on its own)."""
    tgt = Target(out, force=True)
    with _terminate_raises():
        try:
            tgt._lock()
            tgt._owned = owned_files(out) or set()
            tgt._before = _listing(out, tgt._owned)
            yield tgt
        finally:
            tgt._cleanup(False)


def pdflatex_env() -> dict:
    """The environment of pdflatex: TeX may read and write only below its working folder."""
    env = dict(os.environ)
    env.update(openin_any="p", openout_any="p", shell_escape="f")
    return env


def run_pdflatex(exe: str, folder: Path, timeout: float, name: str = "report") -> subprocess.CompletedProcess:
    return subprocess.run([exe, "-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error",
                           f"{name}.tex"], cwd=folder, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, env=pdflatex_env())


def run_bibtex(exe: str, folder: Path, timeout: float, name: str = "report") -> subprocess.CompletedProcess:
    """BibTeX on NAME.aux in ``folder`` (TeX's file access restricted there, as for pdflatex)."""
    return subprocess.run([exe, name], cwd=folder, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, env=pdflatex_env())
