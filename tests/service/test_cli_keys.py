"""``limner keys create`` prints a key once and stores only its hash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from limner.settings import Settings
from limner.store import ApiKey, Database, space_for_key

#: The environment of the commands: no LIMNER_* settings, this checkout's limner.
ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}


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
        env={**ENV, "LIMNER_DATABASE_URL": ""},
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


def limner(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {**ENV, "LIMNER_DATABASE_URL": ""}
    return subprocess.run(
        [sys.executable, "-m", "limner.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**base, **(env or {})},
    )


def test_keys_create_says_where_and_warns_when_it_created_the_database(tmp_path: Path) -> None:
    first = limner("keys", "create", "--space", "team2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    default = tmp_path / "limner-data"
    assert str(default) in first.stderr and "limner.db" in first.stderr
    assert "warning" in first.stderr and "created" in first.stderr
    second = limner("keys", "create", "--space", "team2", cwd=tmp_path)
    assert second.returncode == 0 and str(default) in second.stderr
    assert "warning" not in second.stderr
    # the flag wins over LIMNER_DATA_DIR, which wins over the default
    env_dir, flag_dir = tmp_path / "from-env", tmp_path / "from-flag"
    by_env = limner(
        "keys", "create", "--space", "s", cwd=tmp_path, env={"LIMNER_DATA_DIR": str(env_dir)}
    )
    assert str(env_dir) in by_env.stderr and (env_dir / "limner.db").exists()
    by_flag = limner(
        "keys",
        "create",
        "--space",
        "s",
        "--data-dir",
        str(flag_dir),
        cwd=tmp_path,
        env={"LIMNER_DATA_DIR": str(env_dir)},
    )
    assert str(flag_dir) in by_flag.stderr and (flag_dir / "limner.db").exists()


def test_keys_create_checks_the_sqlite_file_its_database_url_names(tmp_path: Path) -> None:
    # a SQLite URL outside the data dir: the warning follows that file, not DATA_DIR/limner.db
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'keys.db'}"
    (tmp_path / "elsewhere").mkdir()
    args = ("keys", "create", "--space", "s", "--database-url", url)
    first = limner(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "warning" in first.stderr and "keys.db" in first.stderr
    second = limner(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "warning" not in second.stderr and "keys.db" in second.stderr


def test_admin_keys_list_and_revoke(tmp_path: Path) -> None:
    made = limner(
        "keys", "create", "--space", "ops", "--admin", "--data-dir", str(tmp_path), cwd=tmp_path
    )
    tenant = limner(
        "keys", "create", "--space", "team-b", "--data-dir", str(tmp_path), cwd=tmp_path
    )
    admin_token, tenant_token = made.stdout.strip(), tenant.stdout.strip()
    db = Database(Settings(data_dir=tmp_path, database_url="").resolved_database_url())
    admin_space = space_for_key(db, admin_token)
    assert admin_space is not None and admin_space.role == "admin" and admin_space.is_admin
    assert space_for_key(db, tenant_token).role == "tenant"  # type: ignore[union-attr]
    listed = limner("keys", "list", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = {
        line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if "lmn_" in line
    }
    assert set(lines) == {admin_token[:10], tenant_token[:10]}
    admin_line = lines[admin_token[:10]]
    assert "ops" in admin_line and "admin" in admin_line and admin_token not in listed.stdout
    cells = [c.strip() for c in admin_line.split("│")[1:-1]]
    assert cells[5][:4].isdigit() and cells[6] != "-" and cells[7] == "-"  # created, used, live
    assert [c.strip() for c in lines[tenant_token[:10]].split("│")[1:-1]][6] != "-"
    revoked = limner("keys", "revoke", tenant_token[:10], "--data-dir", str(tmp_path), cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert space_for_key(db, tenant_token) is None and space_for_key(db, admin_token) is not None
    db.close()
    after = limner("keys", "list", "--data-dir", str(tmp_path), cwd=tmp_path)
    row = next(x for x in after.stdout.splitlines() if tenant_token[:10] in x)
    assert [c.strip() for c in row.split("│")[1:-1]][7] != "-"
    unknown = limner("keys", "revoke", "lmn_nothing", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1


def test_keys_list_does_not_create_a_data_dir(tmp_path: Path) -> None:
    proc = limner("keys", "list", cwd=tmp_path)
    assert proc.returncode == 2 and "LIMNER_DATA_DIR" in proc.stderr
    assert not (tmp_path / "limner-data").exists()


def test_serve_finds_the_data_dir_as_keys_does(tmp_path: Path) -> None:
    env_dir = tmp_path / "data"
    made = limner(
        "keys", "create", "--space", "s", cwd=tmp_path, env={"LIMNER_DATA_DIR": str(env_dir)}
    )
    assert made.returncode == 0
    serve = subprocess.Popen(
        [sys.executable, "-m", "limner.cli.main", "serve", "--port", "0"],
        cwd=tmp_path,
        env={**ENV, "LIMNER_DATABASE_URL": "", "LIMNER_DATA_DIR": str(env_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stderr is not None
        first = serve.stderr.readline()
    finally:
        serve.terminate()
        serve.communicate(timeout=30)
    assert f"data dir {env_dir}," in first and "(new)" not in first


def test_keys_revoke_takes_the_key_itself_or_a_longer_start(tmp_path: Path) -> None:
    """A user who leaked a key has the key, not its id: revoking with it (or with more than the
    10 characters `keys list` shows) works, and the error for an unknown key never echoes it."""
    made = [
        limner("keys", "create", "--space", "team", "--data-dir", str(tmp_path), cwd=tmp_path)
        for _ in range(2)
    ]
    whole, longer = (m.stdout.strip() for m in made)
    for text in (whole, longer[:16]):
        out = limner("keys", "revoke", text, "--data-dir", str(tmp_path), cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert text[:10] in out.stdout and whole[10:] not in out.stdout
    db = Database(Settings(data_dir=tmp_path, database_url="").resolved_database_url())
    assert space_for_key(db, whole) is None and space_for_key(db, longer) is None
    db.close()
    unknown = "lmn_" + "x" * 40
    out = limner("keys", "revoke", unknown, "--data-dir", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 2 and unknown not in out.stderr and unknown[:10] in out.stderr


def test_keys_create_names_and_roles(tmp_path: Path) -> None:
    viewer = limner(
        "keys",
        "create",
        "--space",
        "team",
        "--role",
        "viewer",
        "--name",
        "Dana (risk)",
        "--data-dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert viewer.returncode == 0, viewer.stderr
    db = Database(Settings(data_dir=tmp_path, database_url="").resolved_database_url())
    space = space_for_key(db, viewer.stdout.strip())
    db.close()
    assert space is not None and space.role == "viewer" and space.key_name == "Dana (risk)"
    assert not space.can_write
    listed = limner("keys", "list", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert "Dana (risk)" in listed.stdout and "viewer" in listed.stdout
    bad = limner(
        "keys",
        "create",
        "--space",
        "team",
        "--role",
        "owner",
        "--data-dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "viewer, tenant, admin" in bad.stderr
