"""Fixtures for the first-hour tests: a fresh startproject per test (copied
from one made per session, since ``startproject`` itself takes a while)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .project import Project


@pytest.fixture(scope="session")
def project_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template")
    Project.create(root)
    return root


@pytest.fixture
def project(tmp_path: Path, project_template: Path) -> Iterator[Project]:
    made = Project.create(tmp_path / "site", template=project_template)
    yield made
    made.stop_all()
