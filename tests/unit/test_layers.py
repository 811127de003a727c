"""The layers of the code: each top-level package imports only packages below it, so none import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

# Bottom to top. docs/development/index.md shows the same order.
LAYERS = (
    "contract",  # resource shapes, file and prefix names, settings and their environment names
    "lambdas",  # domain steps, stores, model registry, the zip functions' handlers
    "inference_image",  # the container images: classifier and ClassifyBatch (LiteRT), training and evaluation (TF)
    "workflow",  # the state machine definition, its rendering and the one local adaptation
    "infra",  # the CDK app
    "operate",  # start, list, show and replay runs on a stack, local or deployed
    "engine",  # the embedded engine: moto, the Lambda bridge, the local pipe, fault injection
    "demo",  # the digits demo
    "console",  # the run console: a web app over operate for the local stack or a deployed one
    "cli",  # the `batchinfer` command
    "benchmarks",
)


def _imported_packages(path: Path) -> set[str]:
    """Our top-level packages that a module imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(LAYERS)


def _imports_by_package() -> dict[str, dict[str, set[str]]]:
    """package -> imported package -> the modules that import it."""
    result: dict[str, dict[str, set[str]]] = {name: {} for name in LAYERS}
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            for imported in _imported_packages(path) - {package}:
                result[package].setdefault(imported, set()).add(path.relative_to(REPO).as_posix())
    return result


def test_every_top_level_python_package_has_a_layer() -> None:
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests"}
    assert packages == set(LAYERS)


def test_no_package_imports_a_package_above_it() -> None:
    upward = [
        f"{package} imports {imported} (above it) in {', '.join(sorted(modules))}"
        for package, imports in _imports_by_package().items()
        for imported, modules in imports.items()
        if LAYERS.index(imported) > LAYERS.index(package)
    ]
    assert upward == []


def test_no_two_packages_import_each_other() -> None:
    imports = _imports_by_package()
    cycles = sorted(
        f"{a} <-> {b}" for a in LAYERS for b in imports[a] if a < b and a in imports[b]
    )
    assert cycles == []


def test_the_contract_imports_nothing_of_ours() -> None:
    assert _imports_by_package()["contract"] == {}


def test_the_deployed_code_ships_whole_packages() -> None:
    from infra.assets import IMAGE_PACKAGES, LAMBDA_PACKAGES

    imports = _imports_by_package()
    for shipped in (LAMBDA_PACKAGES, IMAGE_PACKAGES):
        for package in shipped:
            assert set(imports[package]) <= set(shipped), f"{package} needs a package that is not shipped"
    for name in ("Dockerfile", "Dockerfile.training"):
        dockerfile = (REPO / "inference_image" / name).read_text()
        copied = {line.split()[1].strip("/") for line in dockerfile.splitlines()
                  if line.startswith("COPY ") and not line.split()[1].endswith(".txt")}
        assert set(IMAGE_PACKAGES) == copied, name
    ignore = (REPO / ".dockerignore").read_text().split()
    assert {f"!{package}" for package in IMAGE_PACKAGES} <= set(ignore)
