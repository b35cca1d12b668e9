"""The tutorial notebooks' tests: selectable with ``-m notebooks``, run by default."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "notebooks: the tutorial notebooks, executed top to bottom")
