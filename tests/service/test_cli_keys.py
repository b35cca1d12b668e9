"""``limner keys create`` prints a key once and stores only its hash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from limner.settings import Settings
from limner.store import ApiKey, Database, space_for_key


def test_keys_create_prints_a_working_key(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "limner.cli.main",
            "keys",
            "create",
            "--space",
            "team-a",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "LIMNER_DATABASE_URL": ""},
    )
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    assert token.startswith("lmn_") and len(token) > 40
    db = Database(Settings(data_dir=tmp_path, database_url="").resolved_database_url())
    space = space_for_key(db, token)
    assert space is not None and space.name == "team-a"
    with db.session() as s:
        stored = s.scalars(select(ApiKey.key_hash)).all()
    db.close()
    assert token not in stored and len(stored) == 1 and len(stored[0]) == 64


def test_keys_create_needs_a_space() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "limner.cli.main", "keys", "create"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--space" in proc.stderr and "Traceback" not in proc.stderr
