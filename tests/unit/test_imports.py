"""Every import in the project's packages names a module that exists, also those inside
functions (which run only when their code path does, e.g. when the gate starts in a
container); `extensions` never imports `hub`, and `hub` imports of `extensions` only the
contracts and what the federation defines for both sides."""

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


#: what `hub` may import of `extensions`: the contracts, the federation's task definitions,
#: and (each with its reason) the cohort vocabulary the catalogue checks a `where` against at
#: the door, and the summary cache and Hail session that ingest writes for the tasks to read
HUB_MAY_IMPORT = (
    "extensions.contracts",
    "extensions.federation.tasks",
    "extensions.federation.cohorts",
    "extensions.federation.summary",
    "extensions.federation.hail_session",
)


def test_hub_imports_only_contracts_and_task_definitions():
    found = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for path in modules()
        if path.relative_to(REPO).parts[0] == "hub"
        for line, name in imported_modules(path)
        if name.split(".")[0] == "extensions"
        and not any(name == m or name.startswith(m + ".") for m in HUB_MAY_IMPORT)
    ]
    assert found == []


def imported_modules(path: Path):
    """(line, module) of every project import; `from package import module` names the module."""
    for line, name, names in imported(path):
        spec = importlib.util.find_spec(name)
        package = spec is not None and spec.submodule_search_locations is not None
        subs = [f"{name}.{n}" for n in names if package and importlib.util.find_spec(f"{name}.{n}")]
        yield from ((line, s) for s in subs) if subs else [(line, name)]
