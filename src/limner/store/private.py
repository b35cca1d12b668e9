"""Files and folders readable by the server's user only (folders 0700, files 0600).

The data directory holds every space's images, models and the database; nobody else on the
machine should read it. The modes are set explicitly where things are created, whatever the
process's umask (``limner serve`` also sets the umask to 077).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) as a folder only its owner may enter."""
    p = Path(path)
    missing = [q for q in (p, *p.parents) if not q.exists()]
    p.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    for q in missing:  # mkdir's mode is masked by the umask; set it outright
        with contextlib.suppress(OSError):
            q.chmod(DIR_MODE)
    return p


def private_file(path: str | os.PathLike[str]) -> None:
    """Make the file ``path`` (if it exists) readable and writable by its owner only."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, FILE_MODE)


def private_tree(root: str | os.PathLike[str]) -> None:
    """Make every folder under ``root`` 0700 and every file 0600 (links are left alone)."""
    base = Path(root)
    os.chmod(base, DIR_MODE)
    for folder, dirs, files in os.walk(base):
        for name in dirs:
            path = Path(folder, name)
            if not path.is_symlink():
                path.chmod(DIR_MODE)
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                path.chmod(FILE_MODE)
