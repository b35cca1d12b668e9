"""How a RESULT's image references are answered: data URLs, nothing, or stored files linked
from the explainer's own pane route."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from limner.explain import Explanation
from limner.store.private import private_dir

#: A stored explanation's folder name: 32 hex digits, random.
STORED_ID = re.compile(r"^[0-9a-f]{32}$")
#: A pane's file name as ``Explanation.file_name`` makes it.
PANE_FILE = re.compile(r"^[0-9]{1,6}-[a-z0-9-]{1,200}-[a-z]{1,20}\.png$")


def data_url(png: bytes) -> str:
    """``data:image/png;base64,...`` of a PNG."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def inline_refs(exp: Explanation) -> Callable[[int, str], Any]:
    """Image references as data URLs (a pane shared by the classes is encoded once)."""
    source = dict(exp.pane_keys())
    cache: dict[tuple[int, str], str] = {}

    def ref(class_index: int, kind: str) -> str:
        key = source[(class_index, kind)]
        if key not in cache:
            cache[key] = data_url(exp.png(*key))
        return cache[key]

    return ref


def stored_refs(exp: Explanation, pane_dir: Path, base_url: str) -> Callable[[int, str], Any]:
    """Write every pane under ``pane_dir/<random id>/`` and reference each by its URL
    ``base_url/<id>/<file>`` (served by the explainer's pane route)."""
    stored = secrets.token_hex(16)
    folder = private_dir(pane_dir / stored)
    for key, source in exp.pane_keys():
        with (folder / exp.file_name(*key)).open("wb") as f:
            exp.write_png(*source, f)
    return lambda class_index, kind: f"{base_url}/{stored}/{exp.file_name(class_index, kind)}"


def stored_pane(pane_dir: Path, stored: str, file: str) -> Path | None:
    """The stored pane file, or None where the names are not ones the explainer makes or the
    file does not exist (nothing outside ``pane_dir`` can be named)."""
    if not STORED_ID.match(stored) or not PANE_FILE.match(file):
        return None
    path = pane_dir / stored / file
    return path if path.is_file() else None
