"""Running a sweep: finished points kept on disk by key, the rest computed on Dask.

The output directory holds ``sweep.json`` (what the last run asked for), ``points/KEY.json`` (one
finished point each, written atomically) and the tidy table ``results.parquet`` (``results.csv``
on request). A run first reads the points already there and computes only the others, so an
interrupted or partly failed sweep resumes where it stopped. gradflow writes only those names in
the directory; a directory holding anything else that is not a sweep is refused, never cleared.

Dask (``dask.distributed``) is imported only here and only when used: a ``LocalCluster`` of
worker processes by default, or the scheduler at ``scheduler`` (``tcp://host:8786``) for a real
cluster. ``workers=0`` runs every point in this process, without Dask.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._checks import GradflowError, check_not_in_package
from .._version import __version__
from .sweep_grid import COLUMNS, SCHEMA, GridPoint, measure_point

#: the files and folders a sweep writes at the top of its directory
SWEEP_FILES = ("sweep.json", "points", "results.parquet", "results.csv", ".gradflow.lock",
               "phase_diagram.png", "phase_diagram.pdf", "decay_rates.png", "decay_rates.pdf")
MARKER = "sweep.json"
#: how long to try to reach a scheduler given by address
SCHEDULER_TIMEOUT = "10s"

#: progress(done, total, point, row_or_None): called after every point (finished or failed)
Progress = Callable[[int, int, GridPoint, "dict | None"], None]


@dataclass
class SweepResult:
    """What a sweep produced.

    Attributes:
        rows: result rows of this grid's finished points, in grid order (keys :data:`COLUMNS`).
        failed: (point, one-line reason) for every point whose run raised.
        resumed: points found finished on disk, not recomputed.
        computed: points computed by this run.
        out: the sweep's directory.
    """

    rows: list[dict]
    failed: list[tuple[GridPoint, str]] = field(default_factory=list)
    resumed: int = 0
    computed: int = 0
    out: Path | None = None


def _json_safe(row: dict) -> str:
    # ±∞ rates are kept (JSON's Infinity extension: these files are read back by gradflow only)
    return json.dumps(row, sort_keys=True, allow_nan=True)


class PointStore:
    """The sweep directory: checked, locked, and written one finished point at a time."""

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.points = self.out / "points"

    def check(self) -> None:
        """Refuse a file, or a non-empty directory that is not a gradflow sweep."""
        out = self.out
        check_not_in_package(str(out), "the sweep directory")
        if out.is_symlink() and not out.exists():
            raise GradflowError(f"{out} is a dangling symbolic link")
        if out.exists() and not out.is_dir():
            raise GradflowError(f"{out} exists and is not a directory")
        if not out.exists():
            return
        entries = sorted(p.name for p in out.iterdir())
        if not entries:
            return
        if MARKER not in entries or not self._is_sweep():
            shown = ", ".join(entries[:6]) + (", …" if len(entries) > 6 else "")
            raise GradflowError(f"{out} is not empty and holds no gradflow sweep ({shown}); give a new "
                                "or empty directory (gradflow never deletes files it did not write)")
        if self.points.exists() and not self.points.is_dir():
            raise GradflowError(f"{self.points} is not a directory: a sweep keeps its finished points "
                                "there; move that file away")

    def _is_sweep(self) -> bool:
        try:
            meta = json.loads((self.out / MARKER).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(meta, dict) and meta.get("written_by") == "gradflow sweep"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Create the directory and hold ``.gradflow.lock``; a second run on it is refused."""
        self.check()
        self.points.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.out / ".gradflow.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise GradflowError(f"another gradflow sweep is writing into {self.out}") from None
            yield
        finally:
            os.close(fd)

    def _atomic(self, path: Path, text: str | bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        if isinstance(text, str):
            tmp.write_text(text)
        else:
            tmp.write_bytes(text)
        os.replace(tmp, path)

    def write_meta(self, points: Sequence[GridPoint], command: Sequence[str] | None) -> None:
        meta = {"written_by": "gradflow sweep", "gradflow": __version__, "schema": SCHEMA,
                "command": list(command) if command is not None else None, "points": len(points),
                "grid": [asdict(p) for p in points]}
        self._atomic(self.out / MARKER, json.dumps(meta, indent=1))

    def finished(self) -> dict[str, dict]:
        """Rows already on disk, by key (unreadable or foreign files are skipped)."""
        rows: dict[str, dict] = {}
        if not self.points.is_dir():
            return rows
        for f in self.points.glob("*.json"):
            try:
                row = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(row, dict) and row.get("key") == f.stem and set(COLUMNS) <= set(row):
                rows[f.stem] = row
        return rows

    def save(self, row: dict) -> None:
        self._atomic(self.points / f"{row['key']}.json", _json_safe(row))

    def write_table(self, rows: Sequence[dict], *, csv: bool = False, parquet: bool = True) -> list[Path]:
        """``results.parquet`` (pyarrow) and/or ``results.csv``: one row per point, :data:`COLUMNS`.

        A ``results.csv`` an earlier run wrote is rewritten too, so the two tables never disagree."""
        written = []
        csv = csv or (self.out / "results.csv").is_file()
        if parquet:
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise GradflowError("writing results.parquet needs pyarrow (pip install "
                                    "'gradflow-rnn[sweep]'); or ask for CSV only") from None
            cols = {c: [r[c] for r in rows] for c in COLUMNS}
            types = {"key": pa.string(), "cell": pa.string(), "init": pa.string(),
                     "hidden": pa.int64(), "input": pa.int64(), "steps": pa.int64(), "seed": pa.int64(),
                     "batch": pa.int64()}
            table = pa.table({c: pa.array(v, type=types.get(c, pa.float64())) for c, v in cols.items()})
            tmp = self.out / f".results.parquet.tmp-{os.getpid()}"
            pq.write_table(table, tmp)
            os.replace(tmp, self.out / "results.parquet")
            written.append(self.out / "results.parquet")
        if csv:
            lines = [",".join(COLUMNS)]
            for r in rows:
                lines.append(",".join(_csv_cell(r[c]) for c in COLUMNS))
            self._atomic(self.out / "results.csv", "\n".join(lines) + "\n")
            written.append(self.out / "results.csv")
        return written


def _row_of(row: dict, point: GridPoint) -> bool:
    """Whether a row read back from ``points/`` is the row of ``point``: its parameters are the
    point's and every measured value a number (or null)."""
    params = asdict(point)
    for c in COLUMNS:
        v = row.get(c)
        if c == "key":
            ok = v == point.key
        elif c in params:
            want = params[c]
            ok = (v == want and type(v) is type(want)) if not isinstance(want, float) else (
                isinstance(v, (int, float)) and not isinstance(v, bool) and float(v) == want)
        else:
            ok = v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
        if not ok:
            return False
    return True


def _csv_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf")
    return str(v)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, GradflowError) else f"{type(exc).__name__}: {text}"


def run_sweep(points: Sequence[GridPoint], out: str | os.PathLike, *, scheduler: str | None = None,
              workers: int | None = None, progress: Progress | None = None,
              compute: Callable[[GridPoint], dict] | None = None, processes: bool = True,
              command: Sequence[str] | None = None, csv: bool = False,
              parquet: bool = True) -> SweepResult:
    """Compute every point not yet in ``out``; write the table; return the rows and failures.

    Arguments:
        points: the grid (:func:`~gradflow.grid_points`).
        out: the sweep directory (new, empty, or an earlier sweep's: its finished points are reused).
        scheduler: address of a running Dask scheduler; None starts a ``LocalCluster``.
        workers: worker processes of the local cluster (default: the CPU count, at most the
            number of points to compute); 0 runs in this process without Dask.
        progress: called after every point.
        compute: the function of one point (default :func:`measure_point`).
        processes: local workers as processes (True) or threads.
        command: the command line, recorded in ``sweep.json``.
        csv, parquet: which tables to write.

    A point whose run raises is reported in ``failed`` with its reason; the other points still
    run and every finished one is on disk before this returns.
    """
    if not points:
        raise GradflowError("the grid has no points")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise GradflowError(f"workers must be an integer ≥ 0, got {workers!r}")
    if scheduler is not None and workers is not None:
        raise GradflowError("give either a scheduler address or a number of local workers, not both")
    compute = compute or measure_point
    store = PointStore(out)
    result = SweepResult(rows=[], out=store.out)
    with store.locked():
        store.write_meta(points, command)
        done = store.finished()
        damaged = [p for p in points if p.key in done and not _row_of(done[p.key], p)]
        for p in damaged:  # an edited or damaged points file: recomputed, never put in the table
            del done[p.key]
        if damaged:
            from .loading import note

            note(f"{len(damaged)} finished point file(s) in {store.points} did not match their point "
                 f"(e.g. {damaged[0].key}.json: {damaged[0].describe()}); recomputed")
        todo = [p for p in points if p.key not in done]
        result.resumed = len(points) - len(todo)
        count = result.resumed

        def finished(p: GridPoint, row: dict | None, error: BaseException | None) -> None:
            nonlocal count
            count += 1
            if error is not None:
                result.failed.append((p, _reason(error)))
            else:
                assert row is not None
                store.save(row)
                done[p.key] = row
                result.computed += 1
            if progress is not None:
                progress(count, len(points), p, row)

        if todo:
            if workers == 0 and scheduler is None:
                for p in todo:
                    try:
                        row = compute(p)
                    except Exception as exc:  # noqa: BLE001 - reported per point, the rest go on
                        finished(p, None, exc)
                    else:
                        finished(p, row, None)
            else:
                _on_dask(todo, compute, finished, scheduler, workers, processes)
        result.rows = [done[p.key] for p in points if p.key in done]
        if result.rows:
            store.write_table(result.rows, csv=csv, parquet=parquet)
        else:  # an earlier grid's table would stand for this one (its points stay in points/)
            for name in ("results.parquet", "results.csv"):
                (store.out / name).unlink(missing_ok=True)
    return result


def _on_dask(todo, compute, finished, scheduler, workers, processes) -> None:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise GradflowError("gradflow sweep runs on Dask: pip install 'gradflow-rnn[sweep]' "
                            "(or run in this process with workers=0 / --workers 0)") from None
    with contextlib.ExitStack() as stack:
        if scheduler is not None:
            try:
                client = stack.enter_context(Client(scheduler, timeout=SCHEDULER_TIMEOUT))
            except (OSError, TimeoutError, ValueError) as exc:
                raise GradflowError(f"cannot reach the Dask scheduler at {scheduler}: {_reason(exc)}") from None
        else:
            n = workers or max(1, min(os.cpu_count() or 1, len(todo)))
            cluster = stack.enter_context(LocalCluster(
                n_workers=n, threads_per_worker=1, processes=processes, dashboard_address=None,
                silence_logs=logging.ERROR))
            client = stack.enter_context(Client(cluster))
        futures = {client.submit(compute, p, key=f"gradflow-point-{p.key}", pure=False): p for p in todo}
        for fut in as_completed(futures):
            p = futures[fut]
            if fut.status == "error":
                err = fut.exception()
                finished(p, None, err if isinstance(err, BaseException) else RuntimeError(str(err)))
            else:
                finished(p, fut.result(), None)
            fut.release()
