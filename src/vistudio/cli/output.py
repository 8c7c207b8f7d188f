"""Output for every command: one JSON document with --json, Rich tables and bars without."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.markup import escape
from rich.measure import Measurement
from rich.style import StyleType
from rich.table import Column, Table
from rich.text import Text

from vistudio.errors import Conflict, JobFailed, ModelUnavailable, VistudioError

# Every command imports this module, so it stays light: the database, the settings and the job
# queue are imported by the functions that use them, so `--help` and `project list` start fast.
if TYPE_CHECKING:
    from vistudio.studio import Studio

console = Console()
err_console = Console(stderr=True)
# --wide: wide enough that no table column is ever wrapped (the terminal or a pager scrolls)
WIDE = 10_000
# table cells: a column this narrow is kept whole; a longer one may wrap down to FOLD_MIN cells
SHORT = 10
FOLD_MIN = 8


@dataclass
class State:
    workspace: Path | None = None
    json: bool = False
    wide: bool = False
    _studio: Studio | None = field(default=None, repr=False)

    def studio(self) -> Studio:
        if self._studio is None:
            from vistudio.config import Settings
            from vistudio.studio import open_studio

            settings = Settings(home=self.workspace) if self.workspace else Settings()
            self._studio = open_studio(settings)
        return self._studio


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def emit(
    ctx: typer.Context, data: dict[str, Any], render: Callable[[dict[str, Any]], None] | None = None
) -> None:
    st = state(ctx)
    if st.json or render is None:
        sys.stdout.write(json.dumps(data, default=str) + "\n")
    else:
        with _width(WIDE if st.wide else None):
            render(data)


@contextlib.contextmanager
def _width(width: int | None) -> Iterator[None]:
    """Render at ``width`` columns (None: the terminal's), then give the console its own width back."""
    if width is None:
        yield
        return
    saved = console._width  # None unless the console was built with a width: "ask the terminal"
    console.width = width
    try:
        yield
    finally:
        console._width = saved


class KeyColumn(Column):
    """A column that identifies rows (see ``key_column``)."""


class _Table(Table):
    """A Rich table that gives its key columns all the width the other columns can spare, and
    folds their long values instead of cropping them."""

    def add_row(
        self, *renderables: RenderableType | None, style: StyleType | None = None, end_section: bool = False
    ) -> None:
        # A no_wrap column crops a value longer than its max_width; a Text that says no_wrap=False
        # itself folds instead (Rich lets the cell's own setting win over the column's).
        cells = list(renderables)
        for i, (cell, column) in enumerate(zip(renderables, self.columns, strict=False)):
            if isinstance(column, KeyColumn) and isinstance(cell, str):
                text = Text.from_markup(cell, overflow="fold")
                text.no_wrap = False
                cells[i] = text
        super().add_row(*cells, style=style, end_section=end_section)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        keys = [c for c in self.columns if isinstance(c, KeyColumn)]
        if keys:
            self._fit_keys(keys, console, options)
        yield from super().__rich_console__(console, options)

    def _fit_keys(self, keys: list[KeyColumn], console: Console, options: ConsoleOptions) -> None:
        # Rich shrinks the widest wrappable column first: usually the key ("/tmp/…/cir…"). A key
        # column does not shrink (no_wrap) and takes what the others leave at their narrowest;
        # it folds beyond that. Short columns (a count, a status, a time) stay whole too: they
        # gain little by wrapping and read badly ("confidenc/e"); the long ones give way, down to
        # FOLD_MIN cells (a value without spaces folds).
        others = [c for c in self.columns if not isinstance(c, KeyColumn)]
        fixed: list[bool] = []
        narrow: list[int] = []
        for col in others:
            sizes = [Measurement.get(console, options, cell) for cell in (col.header, *col.cells)]
            widest, longest_word = max(m.maximum for m in sizes), max(m.minimum for m in sizes)
            header = Measurement.get(console, options, col.header).maximum
            fixed.append(widest <= SHORT)
            narrow.append(widest if fixed[-1] else max(header, min(longest_word, FOLD_MIN)))
        chrome = self._extra_width + sum(self.padding[1] + self.padding[3] for _ in self.columns)
        spare = (options.max_width - sum(narrow) - chrome) // len(keys)
        # room enough when each key gets its whole width, or at least 2 × FOLD_MIN cells of it
        need = max(
            min(max(Measurement.get(console, options, c).maximum for c in (k.header, *k.cells)), 2 * FOLD_MIN)
            for k in keys
        )
        fits = spare >= need
        for col in keys:
            # no room even so (a very narrow terminal): a third of the width each, folded
            col.no_wrap = True
            col.max_width = spare if fits else max(spare, options.max_width // (3 * len(keys)))
        for col, keep in zip(others, fixed, strict=True):
            col.no_wrap = fits and keep


def table(*columns: str | Column, title: str | None = None) -> Table:
    """A Rich table whose cells are never cut with "…": a value wider than its column folds onto
    more lines, so a name, a path or an id always shows in full. Headers may be strings or
    ``Column``s (``key_column`` for what identifies a row)."""
    cols = [Column(c) if isinstance(c, str) else c for c in columns]
    for c in cols:
        c.overflow = "fold"
    return _Table(*cols, title=title)


def key_column(header: str) -> Column:
    """The column that identifies a row (a run id, a file name, a folder): it stays on one line
    while the other columns wrap to make room, and folds onto more lines, never cut, when even
    that is not enough."""
    return KeyColumn(header, no_wrap=True, overflow="fold")


def fits(t: Table) -> bool:
    """Whether ``t`` renders without wrapping any cell at the console's width (always with --wide):
    a command can then show every column, and fewer when it would not fit."""
    # measured without a width limit: a table measured at the console's width is already squeezed
    unlimited = console.options.update_width(WIDE)
    return Measurement.get(console, unlimited, t).maximum <= console.width


def common_folder(paths: Sequence[str]) -> tuple[str, list[str]]:
    """The folder all ``paths`` share, and each path relative to it, so that a table shows what
    tells its rows apart ("circle_0001.png") instead of the same long prefix on every row.

    ("", paths) when they share no folder worth hoisting (nothing but the root, or relative
    paths in different folders)."""
    if not paths:
        return "", []
    try:
        common = os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # absolute and relative paths mixed, or different drives
        return "", list(paths)
    if common in ("", os.sep) or not all(p.startswith(common + os.sep) for p in paths):
        return "", list(paths)
    return common, [p[len(common) + 1 :] for p in paths]


def fail(ctx: typer.Context | None, error: VistudioError, *, code: int = 1) -> NoReturn:
    as_json = ctx is not None and state(ctx).json
    if as_json:
        sys.stdout.write(json.dumps(error.to_dict()) + "\n")
    else:
        err_console.print(f"[bold red]error:[/] {escape(error.message)}")
    raise typer.Exit(code)


def wait_for_job(ctx: typer.Context, job_id: int) -> dict[str, Any]:
    """Run the job here if no other worker has taken it, showing progress; return the final job."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vistudio.db import utcnow
    from vistudio.jobs.queue import FINISHED, job_dict
    from vistudio.jobs.worker import Worker

    studio = state(ctx).studio()
    worker = Worker(studio)
    runner = threading.Thread(target=worker.run_one, kwargs={"job_id": job_id}, daemon=True)
    runner.start()
    show = not state(ctx).json and sys.stderr.isatty()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err_console, disable=not show, transient=True) as bar:
            task = bar.add_task("queued", total=None)
            while True:
                job = studio.queue.get(job_id)
                bar.update(
                    task,
                    completed=job.progress_done,
                    total=job.progress_total,
                    description=(job.progress_message or job.status)[:40],
                )
                if job.status in FINISHED:
                    break
                if not runner.is_alive() and job.status == "queued" and job.run_after <= utcnow():
                    # a transient failure was requeued with backoff: take the retry ourselves
                    runner = threading.Thread(target=worker.run_one, kwargs={"job_id": job_id}, daemon=True)
                    runner.start()
                runner.join(timeout=0.2)
    except KeyboardInterrupt:
        with contextlib.suppress(Conflict):  # it finished just now
            studio.queue.cancel(job_id)
        err_console.print("cancelling… (press Ctrl-C again to leave it running)")
        # the job may run in this process or on another worker: wait for its outcome either way
        while studio.queue.get(job_id).status not in FINISHED:
            runner.join(timeout=0.2)
    runner.join(timeout=5)
    return job_dict(studio.queue.get(job_id))


def wait_for_success(ctx: typer.Context, job_id: int, what: str) -> dict[str, Any]:
    """``wait_for_job``, then the final job if it succeeded; otherwise a ``JobFailed`` (or the
    job's ``ModelUnavailable``) saying ``what`` ended how, with the job and its traceback."""
    final = wait_for_job(ctx, job_id)
    if final["status"] == "succeeded":
        return final
    err = final.get("error") or {"message": final["status"]}
    details = {"job": {k: v for k, v in final.items() if k != "error"}, "traceback": err.get("traceback")}
    if err.get("type") == "ModelUnavailable":
        raise ModelUnavailable(err.get("message", "model unavailable"), details=details)
    raise JobFailed(f"{what} {final['status']}: {err.get('message')}", details=details)


def print_embedding_follow_up(report: dict[str, Any]) -> None:
    """The line an import or scan prints when it queued embedding of its new images."""
    follow_up = report.get("embedding") or {}
    if "job" in follow_up:
        console.print(
            f"new images queued for embedding: job {follow_up['job']} (runs on a server's workers or `vistudio embed`)"
        )
    elif "error" in follow_up:
        console.print(f"[yellow]new images not queued for embedding:[/] {escape(follow_up['error'])}")
