"""``vistudio``: the command-line front door."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vistudio.cli import (
    albums,
    backup,
    captions,
    data,
    dataset,
    duplicates,
    edits,
    enrich,
    evaluation,
    events,
    faces,
    geo,
    jobs,
    library,
    logs,
    people,
    projects,
    runs,
    search,
    serve,
    settings,
    splits,
    timeline,
    training,
    users,
    videos,
)

try:  # recent Typer releases vendor Click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older Typer on plain Click
    from click import exceptions as click_exc  # type: ignore[no-redef]
from vistudio.cli.output import State, err_console
from vistudio.errors import BadRequest, VistudioError

app = typer.Typer(
    name="vistudio",
    help="vistudio: a local-first Vision Studio (library, datasets, splits, training, pipelines).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace", "-w", envvar="VISTUDIO_HOME", help="workspace folder (default: user data dir)"
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="print exactly one JSON document on stdout")
    ] = False,
    wide: Annotated[
        bool,
        typer.Option("--wide", help="tables at full width: no column wrapped to fit the terminal"),
    ] = False,
) -> None:
    ctx.obj = State(workspace=workspace, json=json_out, wide=wide)


app.add_typer(projects.app, name="project")
# the same group under the plural name the docs of users and sharing use
app.add_typer(projects.app, name="projects", hidden=True)
app.add_typer(splits.app, name="split")
app.add_typer(jobs.app, name="jobs")
app.add_typer(runs.app, name="runs")
app.add_typer(settings.app, name="settings")
app.add_typer(dataset.app, name="dataset")
data.register(app)
runs.register(app)
jobs.register(app)
serve.register(app)
training.register(app)
evaluation.register(app)
library.register(app)
search.register(app)
duplicates.register(app)
edits.register(app)
faces.register(app)
people.register(app)
timeline.register(app)
videos.register(app)
events.register(app)
captions.register(app)
enrich.register(app)
albums.register(app)
geo.register(app)
logs.register(app)
backup.register(app)
users.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns every error into the documented output and exit code."""
    args = sys.argv[1:] if argv is None else argv
    as_json = "--json" in args
    try:
        # without standalone mode click hands back a command's `typer.Exit(code)` as the return value
        code = app(args=args, standalone_mode=False, prog_name="vistudio")
        if isinstance(code, int) and not isinstance(code, bool) and code:
            return code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except click_exc.UsageError as exc:
        _report(BadRequest(exc.format_message()), as_json, code="usage")
        return 2
    except VistudioError as exc:
        _report(exc, as_json)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so plainly, keep the traceback for VISTUDIO_DEBUG=1
        if os.environ.get("VISTUDIO_DEBUG"):
            raise
        _report(
            VistudioError(
                f"internal error: {type(exc).__name__}: {exc} (set VISTUDIO_DEBUG=1 for the traceback)"
            ),
            as_json,
            code="internal",
        )
        return 1
    return 0


def _report(exc: VistudioError, as_json: bool, *, code: str | None = None) -> None:
    if as_json:
        import json

        body = exc.to_dict()
        if code:
            body["error"]["code"] = code
        sys.stdout.write(json.dumps(body) + "\n")
    else:
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}")


if __name__ == "__main__":
    sys.exit(main())
