"""Several vistudio processes on one PostgreSQL: they start at once without tripping over each
other's schema upgrade."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from factories import POSTGRES_MARKS, POSTGRES_URL
from vistudio.db.session import head_revision

pytestmark = POSTGRES_MARKS

CLI = [sys.executable, "-m", "vistudio.cli.main"]


def test_processes_starting_together_migrate_a_new_database_once(tmp_path: Path) -> None:
    assert POSTGRES_URL
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"vistudio_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        env = {**os.environ, "VISTUDIO_DATABASE_URL": url}
        # four processes, each its own workspace folder (as on four machines), one database
        procs = [
            subprocess.Popen(
                [*CLI, "--workspace", str(tmp_path / f"ws{i}"), "--json", "project", "list"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(4)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, [err[-2000:] for _, err in outs]
        db = create_engine(url)
        with db.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
                head_revision()
            ]
        db.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
