"""The CLI starts without the heavy libraries: `--help` and `project list` import none of them
(the start-up time itself is measured by benchmarks/cli_startup.py, never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from vistudio.db.session import current_revision, head_revision, make_engine, upgrade

HEAVY = (
    "torch",
    "open_clip",
    "faiss",
    "sklearn",
    "lightning",
    "torchvision",
    "onnxruntime",
    "pyarrow",
    "pandas",
    "scipy",
    "PIL",
    "numpy",
)


def imported_by(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter and list the modules it left imported."""
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def cli(*args: str) -> str:
    return (
        "import contextlib, io\n"
        "from vistudio.cli.main import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()): assert main({list(args)!r}) == 0\n"
    )


def top_level(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(names))


def test_help_imports_neither_the_heavy_libraries_nor_the_database_layer() -> None:
    modules = imported_by(cli("--help"))
    assert top_level(modules, (*HEAVY, "sqlalchemy", "alembic", "yaml")) == []
    assert not [m for m in modules if m.startswith("vistudio.services")]


def test_project_list_imports_no_heavy_library_and_no_alembic_once_the_schema_is_current(
    tmp_path: Path,
) -> None:
    ws = str(tmp_path / "ws")
    first = imported_by(cli("--workspace", ws, "project", "create", "p"))  # creates the schema
    assert "alembic" in {m.split(".")[0] for m in first}
    assert top_level(first, HEAVY) == []
    modules = imported_by(cli("--workspace", ws, "project", "list"))
    assert top_level(modules, (*HEAVY, "alembic")) == []


def test_the_schema_fast_path_agrees_with_alembic_and_still_upgrades_an_old_database(tmp_path: Path) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    from vistudio.db.session import MIGRATIONS, alembic_config

    assert [head_revision()] == ScriptDirectory(str(MIGRATIONS)).get_heads()
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    assert current_revision(engine) is None  # a new database
    command.upgrade(alembic_config(engine), "0006")
    assert current_revision(engine) == "0006"
    upgrade(engine)  # behind: Alembic runs the missing migrations
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        assert "excluded" in {row[1] for row in conn.execute(text("PRAGMA table_info(library_files)"))}
    engine.dispose()


def test_deleting_an_experiment_runs_every_cleanup_hook_without_importing_their_modules_first() -> None:
    # the CLI imports services inside its commands: the hooks that exports registers must still
    # run when a process has imported only the experiments service
    modules = imported_by(
        "from vistudio.services.experiments import cleanup_hooks\n"
        "hooks = [h.__name__ for h in cleanup_hooks()]\n"
        "assert hooks, hooks\n"
    )
    assert "vistudio.services.exports" in modules
