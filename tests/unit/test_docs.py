"""The docs: the reference pages name every command, option, setting and context key the code defines, and
every link in the README resolves."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer

from cli.app import app
from contract.settings import Settings, check_text
from infra.config import DeployConfig

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def _reference() -> ModuleType:
    """docs/hooks/reference.py, the mkdocs hook that writes the reference pages (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("docs_reference", REPO / "docs" / "hooks" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The reference pages as the build writes them, read back from the files."""
    out = tmp_path_factory.mktemp("docs")
    written = _reference().write_pages(out)
    return {path.relative_to(out).as_posix(): path.read_text() for path in written}


# -- what the code defines, walked here on its own (not through the generator) ----------------------------
def _commands(command: Any, names: list[str]) -> list[tuple[str, Any]]:
    found = [(" ".join(names), command)]
    for name, child in sorted(getattr(command, "commands", {}).items()):
        if not child.hidden:
            found += _commands(child, [*names, name])
    return found


def _sections(page: str) -> dict[str, str]:
    """A page's `## `heading`` sections by the heading's code text."""
    parts = re.split(r"^## `([^`]+)`.*$", page, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def missing_from_cli_page(page: str) -> list[str]:
    """Every command, option spelling and argument of `batchinfer` that its section of the page does not name."""
    sections = _sections(page)
    missing = []
    for path, command in _commands(typer.main.get_command(app), ["batchinfer"]):
        section = sections.get(path)
        if section is None:
            missing.append(path)
            continue
        # The first cell of each table row: an option's spellings with its value, or an argument's name.
        named = {name for line in section.splitlines() if line.startswith("| `")
                 for name in re.findall(r"--?[\w-]+|\b[A-Z][A-Z_]+\b", line.split(" | ")[0])}
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                missing += [f"{path} {name}" for name in [*param.opts, *param.secondary_opts] if name not in named]
            elif param.param_type_name == "argument" and str(param.name).upper() not in named:
                missing.append(f"{path} {str(param.name).upper()}")
    return missing


def _rows(page: str, start: str) -> dict[str, str]:
    """Table rows whose first cell starts with `start`, by the first code span in that cell."""
    rows = {}
    for line in page.splitlines():
        if line.startswith(f"| {start}"):
            first = re.search(r"`([^`]+)`", line)
            assert first, line
            rows[first.group(1)] = line
    return rows


def missing_from_settings_page(page: str) -> list[str]:
    """Every setting whose variable, name, default or check is not in its row of the page."""
    rows = _rows(page, "`BATCHINFER_")
    missing = []
    for f in fields(Settings):
        variable = f.metadata["variable"].name
        row = rows.get(variable, "")
        default = "required" if f.default is MISSING else f"`{f.default}`"
        for wanted in (f"`{variable}`", f"`{f.name}`", default, check_text(f.name)):
            if wanted not in row:
                missing.append(f"{variable}: {wanted}")
    return missing


def missing_from_context_page(page: str) -> list[str]:
    """Every context key (DeployConfig's and cdk.json's) that has no row, or whose cdk.json default is not shown."""
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    rows = _rows(page, "<a id=")
    missing = []
    for key in sorted({f.name for f in fields(DeployConfig)} | set(context)):
        row = rows.get(key)
        if row is None:
            missing.append(key)
        elif key in context:
            value = context[key]
            shown = "none" if value is None else f"`{json.dumps(value) if isinstance(value, str) else value}`"
            if shown not in row:
                missing.append(f"{key}: default {shown}")
    return missing


# -- the reference pages ------------------------------------------------------------------------------------
def test_the_cli_reference_names_every_command_option_and_argument(pages: dict[str, str]) -> None:
    page = pages["reference/cli.md"]
    assert missing_from_cli_page(page) == []
    # Sub-commands of sub-apps are there: `local serve` and its options.
    assert "--state-dir" in _sections(page)["batchinfer local serve"]


def test_the_cli_reference_walks_groups_of_groups() -> None:
    """Commands added later, such as a `models` group with its own sub-groups, are found at any depth."""
    tool = typer.Typer()
    models = typer.Typer(help="The model registry.")
    review = typer.Typer(help="Approval of published versions.")
    tool.add_typer(models, name="models")
    models.add_typer(review, name="review")

    @tool.command()
    def runs() -> None:
        """Recent executions."""

    @models.command()
    def publish(artifact: str = typer.Argument(..., help="The model file."),
                promote: bool = typer.Option(False, "--promote/--keep", help="Serve it at once.")) -> None:
        """Publish a model version."""

    @review.command()
    def approve(version: str = typer.Argument(..., help="The version.")) -> None:
        """Approve a version."""

    page = _reference().cli_page(tool)
    sections = _sections(page)
    assert {"batchinfer models publish", "batchinfer models review approve"} <= set(sections)
    assert "`--promote / --keep`" in sections["batchinfer models publish"]
    assert "| `ARTIFACT` | The model file. |" in sections["batchinfer models publish"]
    assert "| `VERSION` | The version. |" in sections["batchinfer models review approve"]


def test_the_settings_reference_names_every_setting_with_its_type_default_and_check(pages: dict[str, str]) -> None:
    assert missing_from_settings_page(pages["reference/settings.md"]) == []
    row = _rows(pages["reference/settings.md"], "`BATCHINFER_")["BATCHINFER_BATCH_SIZE"]
    assert "| int, `32` |" in row and "greater than zero, at most 1,000" in row
    assert "[`batch_size`](context.md#batch_size)" in row


def test_every_setting_check_says_in_words_what_it_accepts() -> None:
    assert [f.name for f in fields(Settings) if not check_text(f.name)] == []


def test_the_context_reference_names_every_key_of_the_deploy_config_and_cdk_json(pages: dict[str, str]) -> None:
    page = pages["reference/context.md"]
    assert missing_from_context_page(page) == []
    assert "`classify_timeout_seconds` at most **78 s**" in page  # computed from the definition's Retry policies


def test_the_checks_catch_a_page_that_lost_an_option_a_setting_or_a_key(pages: dict[str, str]) -> None:
    cli = "\n".join(line for line in pages["reference/cli.md"].splitlines() if not line.startswith("| `--wait`"))
    assert "batchinfer start --wait" in missing_from_cli_page(cli)
    settings = pages["reference/settings.md"].replace("`BATCHINFER_TIME_ZONE`", "`BATCHINFER_TZ`")
    assert "BATCHINFER_TIME_ZONE: `BATCHINFER_TIME_ZONE`" in missing_from_settings_page(settings)
    context = "\n".join(line for line in pages["reference/context.md"].splitlines()
                        if 'id="event_bus_name"' not in line)
    assert missing_from_context_page(context) == ["event_bus_name"]


def test_the_moto_patches_reference_has_every_numbered_patch(pages: dict[str, str]) -> None:
    page = pages["reference/moto-patches.md"]
    sources = "".join(path.read_text() for path in _reference().moto_patch_modules())  # one module, or one a service
    numbers = sorted(int(n) for n in re.findall(r"^(\d+)\. ", sources, re.M))  # each service's module its own
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 17
    assert [int(n) for n in re.findall(r"^## (\d+)\. ", page, re.M)] == numbers


def test_every_page_in_the_nav_is_a_file_or_generated() -> None:
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$|^\s*-\s*([\w/.-]+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.M)
    named = {a or b for a, b in nav}
    generated = set(_reference().PAGES)
    on_disk = {p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md")}
    assert named - on_disk == generated
    assert on_disk - named == set()


def test_the_site_builds_strictly_with_the_reference_in_it(tmp_path: Path) -> None:
    """`mkdocs build --strict` (what `make docs` and CI run): every link and anchor resolves, every page is in
    the nav, and the built reference pages hold every command, option, setting and context key."""
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                           cwd=REPO, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stderr
    html = {name: (tmp_path / "reference" / name / "index.html").read_text()
            for name in ("cli", "settings", "context", "moto-patches")}
    for path, command in _commands(typer.main.get_command(app), ["batchinfer"]):
        assert f'id="{path.replace(" ", "-")}"' in html["cli"], path
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                assert all(name in html["cli"] for name in [*param.opts, *param.secondary_opts]), param.opts
    assert all(f.metadata["variable"].name in html["settings"] for f in fields(Settings))
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    assert all(f'id="{key}"' in html["context"] for key in {f.name for f in fields(DeployConfig)} | set(context))
    assert (tmp_path / "console" / "run.png").exists()  # the console's screenshots are in the site


# -- the README ---------------------------------------------------------------------------------------------
def _github_slug(heading: str) -> str:
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(markdown: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", markdown.read_text(), flags=re.M | re.S)
    found = {_github_slug(h) for h in re.findall(r"^#{1,6} (.+?)\s*$", text, re.M)}
    found |= set(re.findall(r"\{ #([\w-]+) \}", text)) | set(re.findall(r'id="([\w-]+)"', text))
    return found


def test_the_readme_is_short_and_gives_the_two_commands_first() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    first_block = re.search(r"^```\w*\n(.*?)^```", text, re.M | re.S)
    assert first_block and "make demo" in first_block.group(1) and "make test" in first_block.group(1)


def test_every_link_in_the_readme_resolves() -> None:
    text = re.sub(r"^```.*?^```", "", README.read_text(), flags=re.M | re.S)
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'src="([^"]+)"', text)
    local = [t for t in targets if not re.match(r"^[a-z]+:", t)]
    assert len(local) >= 10  # the README points into the docs
    broken = []
    for target in local:
        path, _, anchor = target.partition("#")
        file = (README.parent / path).resolve() if path else README
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(target)
    assert broken == []
