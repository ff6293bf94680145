"""The package's layers: imports point down only, Lightning stays in the training layers, ``tasks/`` stays small."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sonofm"
LOWER_FLOORS = ("data", "models", "methods", "sam", "metrics", "runs", "report", "export", "engine")
TRAINING_LAYERS = ("engine", "tasks", "workflows", "inference")
TOP_LEVEL = ("errors", "extras", "atomic", "progress")
# What each package may import from sonofm, besides itself and the top-level helpers (errors, optional extras,
# atomic writes, progress bars).
ALLOWED = {
    "data": set(),
    "metrics": {"data"},
    "models": {"data"},
    "methods": {"data", "models"},
    "sam": {"data", "models", "metrics", "runs"},
    "runs": {"data", "models"},
    "report": {"data", "models", "runs"},
    "export": {"data", "models", "runs"},
    "engine": {"data", "models", "runs", "report"},
    "tasks": {"data", "models", "methods", "sam", "metrics", "runs", "report", "engine"},
    "workflows": {"data", "models", "methods", "sam", "metrics", "runs", "report", "engine", "tasks", "export"},
    "inference": {"data", "models", "methods", "sam", "metrics", "runs", "report", "engine", "tasks", "export"},
    # the local web page: a front end like cli, on the Python API (sonofm.api) and the parts it shows
    "serve": {"api", "data", "sam", "runs", "report", "engine", "tasks"},
}


def package_of(path: Path) -> str:
    """The first folder under ``sonofm/`` (``""`` for a top-level module)."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else ""


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, including imports inside functions."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_imports_point_down_only() -> None:
    upward = []
    for path in SOURCES:
        package = package_of(path)
        if package not in ALLOWED:
            continue  # cli and the top-level modules may import anything
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "sonofm" and len(parts) > 1 and parts[1] not in (package, *TOP_LEVEL, *ALLOWED[package]):
                upward.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert upward == []


def test_only_the_training_layers_import_lightning() -> None:
    found = []
    for path in SOURCES:
        if package_of(path) not in TRAINING_LAYERS:
            found += [f"{path.relative_to(PACKAGE)} imports {module}" for module in imported_modules(path)
                      if module.split(".")[0] in ("lightning", "pytorch_lightning")]
    assert found == []


def test_lower_floors_never_import_tasks_or_cli() -> None:
    for path in SOURCES:
        if package_of(path) in LOWER_FLOORS:
            upward = {m for m in imported_modules(path) if m.split(".")[:2] in (["sonofm", "tasks"], ["sonofm", "cli"])}
            assert not upward, f"{path.relative_to(PACKAGE)} imports {sorted(upward)}"


def test_tasks_holds_one_package_per_command() -> None:
    modules = [path.name for path in (PACKAGE / "tasks").glob("*.py") if path.name != "__init__.py"]
    packages = sorted(path.name for path in (PACKAGE / "tasks").iterdir() if (path / "__init__.py").is_file())
    assert modules == []
    assert packages == ["aclus", "cls", "enhance", "mim", "sam", "seg"]
