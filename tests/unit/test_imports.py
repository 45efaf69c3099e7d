"""Every import in the project's packages names a module that exists, also those inside
functions (which run only when their code path does, e.g. when the gate starts in a
container), and `extensions` never imports `hub`."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("hub", "extensions")


def modules() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", *(f"{p}/*.py" for p in PACKAGES)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [REPO / f for f in out if (REPO / f).exists()]


def imported(path: Path):
    """(line, absolute module name) of every project import in `path`."""
    rel = path.relative_to(REPO).with_suffix("")
    package = list(rel.parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] in PACKAGES:
                yield node.lineno, name, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PACKAGES:
                    yield node.lineno, a.name, []


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_imports_name_existing_modules(path):
    missing = []
    for line, name, names in imported(path):
        if importlib.util.find_spec(name) is None:
            missing.append(f"line {line}: no module {name}")
            continue
        for n in names:
            # `from package import module` names a submodule or an attribute; a submodule
            # must exist when the package has no such attribute in its own file
            sub = f"{name}.{n}"
            spec = importlib.util.find_spec(name)
            if spec.submodule_search_locations and importlib.util.find_spec(sub) is None:
                init = Path(spec.origin).read_text(encoding="utf-8") if spec.origin else ""
                if n not in init:
                    missing.append(f"line {line}: no module or name {sub}")
    assert missing == []


def test_extensions_never_import_hub():
    found = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for path in modules()
        if path.relative_to(REPO).parts[0] == "extensions"
        for line, name, _ in imported(path)
        if name.split(".")[0] == "hub"
    ]
    assert found == []
