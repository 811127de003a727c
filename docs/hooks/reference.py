"""Reference pages written from the code at build time: the CLI, the settings, the CDK context keys, moto's patches.

mkdocs runs this module as a hook (`hooks:` in mkdocs.yml): `on_files` adds the pages to the site, so they
cannot drift from the code. `render_pages()` returns the same pages as text, for tests and for `write_pages`.
Nothing here imports TensorFlow or moto: the CLI imports its commands' modules only when they run, the
settings and the deploy config are plain dataclasses, and moto's patches are read from their docstring.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # mkdocs runs from the root, but the packages may not be installed
    sys.path.insert(0, str(ROOT))

GENERATED = "<!-- generated from the code by docs/hooks/reference.py at build time: do not edit -->\n\n"


def _outside_code(text: str, escape: Callable[[str], str]) -> str:
    """`escape` applied to the text outside `code spans`, which Markdown shows as written."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(part if index % 2 else escape(part) for index, part in enumerate(parts))


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes and angle brackets escaped."""
    return _outside_code(re.sub(r"\s+", " ", text).strip(),
                         lambda part: part.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;"))


def _prose(text: str) -> str:
    """A docstring or help text as Markdown: paragraphs rewrapped, brackets and stars kept literal."""
    paragraphs = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", inspect.cleandoc(text or ""))]
    escaped = [_outside_code(p, lambda part: part.replace("<", "&lt;").replace("[", "\\[").replace("*", "\\*"))
               for p in paragraphs if p]
    return "\n\n".join(escaped)


def _code(value: Any) -> str:
    return f"`{value}`"


def _comments_above_fields(cls: type) -> dict[str, str]:
    """The comment written above each field of a dataclass, by field name.

    A comment describes the field right below it, and the fields that follow it with no blank line or
    comment between them when they share a word of their name with the one before ("# EventBridge
    Scheduler expressions" above score_schedule describes retrain_schedule too; "# A candidate is
    promoted when ..." above promotion_margin does not describe train_epochs).
    """
    path = Path(inspect.getsourcefile(cls) or "")
    lines = path.read_text().splitlines()
    node = next(n for n in ast.walk(ast.parse("\n".join(lines))) if isinstance(n, ast.ClassDef)
                and n.name == cls.__name__)
    found: dict[str, str] = {}
    previous_end, previous_name, current = node.lineno, "", ""
    for statement in node.body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            previous_end, previous_name, current = statement.end_lineno or statement.lineno, "", ""
            continue
        name = statement.target.id
        between = [line.strip() for line in lines[previous_end:statement.lineno - 1]]
        comments = [line.lstrip("#").strip() for line in between if line.startswith("#")]
        if comments:
            current = " ".join(comments)
        elif between or not set(name.split("_")) & set(previous_name.split("_")):
            current = ""
        found[name] = current
        previous_end, previous_name = statement.end_lineno or statement.lineno, name
    return found


def _notes(*comments: str | None) -> str:
    """The comments on one name in two places, each once."""
    return " ".join(dict.fromkeys(c for c in comments if c))


# -- the CLI -------------------------------------------------------------------------------------------------
def cli_commands(app: Any = None) -> Iterator[tuple[list[str], Any, Any]]:
    """Every command of `batchinfer` (or of another Typer `app`), groups and their sub-commands at any depth
    included: (path of names, command, its context).

    Duck-typed: Typer builds click commands, from click itself or from the copy of click it ships.
    """
    import typer

    if app is None:
        from cli.app import app

    def walk(command: Any, names: list[str], parent: Any) -> Iterator[tuple[list[str], Any, Any]]:
        context = command.context_class(command, info_name=names[-1], parent=parent)
        yield names, command, context
        if hasattr(command, "list_commands"):
            for name in command.list_commands(context):
                child = command.get_command(context, name)
                if child is not None and not child.hidden:
                    yield from walk(child, [*names, name], context)

    yield from walk(typer.main.get_command(app), ["batchinfer"], None)


def is_group(command: Any) -> bool:
    return hasattr(command, "list_commands")


def arguments_of(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "argument"]


def options_of(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option" and not p.hidden]


def option_names(param: Any) -> list[str]:
    """Every spelling of an option, `--model` and `--no-model` alike."""
    return [*param.opts, *param.secondary_opts]


def _help_record(param: Any, context: Any) -> tuple[str, str, str]:
    """An option as `--help` prints it: its spellings with the value's type, its help, and the bracketed
    details (default, range, environment variable) split off the help."""
    names, text = param.get_help_record(context) or (" / ".join(option_names(param)), param.help or "")
    details = re.search(r"\s*\[([^\[\]]*)\]\s*$", text)
    if details:
        text = text[:details.start()]
    return names, text, details.group(1) if details else ""


def _options_table(options: list[Any], context: Any) -> str:
    rows = ["| option | what it does | default, range, environment variable |", "| --- | --- | --- |"]
    for param in options:
        names, text, details = _help_record(param, context)
        rows.append(f"| {_code(names)} | {_cell(text)} | {_cell(details)} |")
    return "\n".join(rows)


def _arguments_table(arguments: list[Any]) -> str:
    rows = ["| argument | what it is |", "| --- | --- |"]
    for param in arguments:
        name = getattr(param, "human_readable_name", None) or str(param.name).upper()
        required = "" if param.required else " (optional)"
        rows.append(f"| {_code(name)}{required} | {_cell(getattr(param, 'help', None) or '')} |")
    return "\n".join(rows)


def cli_page(app: Any = None) -> str:
    commands = list(cli_commands(app))
    out = [GENERATED, "# The `batchinfer` command\n",
           "Every command and option, read from the Typer app in `cli/app.py` when the site is built. "
           "The same text is printed by `batchinfer COMMAND --help`. Options of `batchinfer` itself "
           "(the first section) go before the command: `batchinfer --port 5078 runs`.\n"]
    out.append("| command | what it does |\n| --- | --- |")
    for names, command, _ in commands[1:]:
        first = _prose(command.help or "").split("\n\n")[0]
        out.append(f"| [{_code(' '.join(names))}](#{'-'.join(names)}) | {_cell(first)} |")
    out.append("")
    for names, command, context in commands:
        out.append(f"## `{' '.join(names)}` {{ #{'-'.join(names)} }}\n")
        out.append(_prose(command.help or "") + "\n")
        usage = " ".join([*names, *command.collect_usage_pieces(context)])
        out.append(f"```\n{usage}\n```\n")
        if is_group(command):
            subcommands = [name for name in command.list_commands(context)
                           if not (command.get_command(context, name) or command).hidden]
            out.append("Commands: " + ", ".join(
                f"[{_code(' '.join([*names, name]))}](#{'-'.join([*names, name])})" for name in subcommands)
                + ".\n")
        if arguments_of(command):
            out.append(_arguments_table(arguments_of(command)) + "\n")
        if options_of(command):
            out.append(_options_table(options_of(command), context) + "\n")
        if command.epilog:
            out.append(_prose(command.epilog) + "\n")
    return "\n".join(out)


# -- the settings --------------------------------------------------------------------------------------------
def _type_name(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def settings_page() -> str:
    from contract.settings import Settings, check_text
    from infra.config import SHARED_SETTINGS, DeployConfig

    notes = _comments_above_fields(Settings)
    deploy_notes = _comments_above_fields(DeployConfig)
    out = [GENERATED, "# Settings\n",
           "Every setting of the functions, read from `contract/settings.py` when the site is built. A function "
           "reads them once from its environment into a typed `Settings`; a missing or bad one stops it with "
           "an error that names the variable (`bad setting: BATCHINFER_BATCH_SIZE='0' must be greater than "
           "zero`). CDK and the embedded engine write every function's environment with `Settings(...).to_env()`, "
           "so the names below are the whole interface. A setting that is also a CDK context key takes its "
           "value from that key when deployed (see [CDK context keys](context.md)), checked by the same rule.\n",
           "| environment variable | type, default | accepts | notes |",
           "| --- | --- | --- | --- |"]
    for f in fields(Settings):
        variable = f.metadata["variable"]
        default = "required" if f.default is MISSING else (_code(f.default) if f.default != "" else "empty")
        accepts = check_text(f.name)
        if variable.verbatim:
            accepts += "; taken as written (spaces kept, may be empty)"
        note = _cell(_notes(notes.get(f.name), deploy_notes.get(f.name)))
        if f.name in SHARED_SETTINGS:
            note = f"CDK context key [{_code(f.name)}](context.md#{f.name}). {note}".strip()
        out.append(f"| {_code(variable.name)}<br>setting {_code(f.name)} | {_cell(_type_name(f.type))}, {default} | "
                   f"{_cell(accepts)} | {note} |")
    return "\n".join(out) + "\n"


# -- the CDK context keys ------------------------------------------------------------------------------------
def cdk_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


def highest_classify_timeout() -> int:
    """The largest classify_timeout_seconds whose worst case fits the EXPRESS child (what synth allows)."""
    from contract.resource_spec import FUNCTION_LIMITS
    from infra.config import EXPRESS_CHILD_SECONDS, child_worst_case_seconds

    record = FUNCTION_LIMITS["RecordBatchFailure"].timeout_seconds
    fits = [t for t in range(1, EXPRESS_CHILD_SECONDS + 1)
            if child_worst_case_seconds({"RecordBatchFailure": record, "ClassifyBatch": t}) <= EXPRESS_CHILD_SECONDS]
    return max(fits, default=0)


def context_page() -> str:
    from contract.resource_spec import LAMBDA_MAX_MEMORY_MB
    from contract.settings import Settings, check_text, variable_of
    from infra.config import MAX_BATCH_SIZE, MAX_PIPE_BATCH_SIZE, SHARED_SETTINGS, DeployConfig

    context = cdk_context()
    notes = _comments_above_fields(DeployConfig)
    setting_notes = _comments_above_fields(Settings)
    out = [GENERATED, "# CDK context keys\n",
           "Every deployment setting, read from `infra/config.py` (`DeployConfig`) and `cdk.json` when the site "
           "is built. Set one with `cdk deploy -c key=value`, or change its default in `cdk.json`. A bad value "
           "stops `cdk synth` with a message that names the key. A key that is also a [setting](settings.md) of "
           "the functions is passed to them as its environment variable and checked by the same rule.\n",
           "| key | type, default (cdk.json) | accepts | notes |",
           "| --- | --- | --- | --- |"]
    for f in fields(DeployConfig):
        declared = getattr(DeployConfig(), f.name)
        default = context.get(f.name, declared)
        shown = "none" if default is None else _code(json.dumps(default) if isinstance(default, str) else default)
        if f.name in context and context[f.name] != declared:
            shown += f" (without cdk.json: {_code(declared)})"
        if f.name in SHARED_SETTINGS:
            accepts = f"{_cell(check_text(f.name))}; the functions' setting {_code(variable_of(f.name))}"
            note = _notes(notes.get(f.name), setting_notes.get(f.name))
        else:
            accepts, note = "", notes.get(f.name, "")
        anchor = f'<a id="{f.name}"></a>'
        out.append(f"| {anchor}{_code(f.name)} | {_cell(_type_name(f.type))}, {shown} | {accepts} | {_cell(note)} |")
    unread = sorted(set(context) - {f.name for f in fields(DeployConfig)})
    if unread:
        out.append("\nIn `cdk.json` but not read by `DeployConfig` (so they change nothing): "
                   + ", ".join(_code(k) for k in unread) + ".")
    out.append("\n## Limits checked at synth\n")
    out.append("Values that are each within their own range but that AWS would reject at run time, failing runs, "
               "stop the synth too (figures computed from `infra/config.py` and the definition when the site "
               "was built):\n")
    out.append(f"- `classify_timeout_seconds` at most **{highest_classify_timeout()} s**: every attempt of the "
               "Classify map's child, its Retry backoffs and RecordBatchFailure must fit the EXPRESS child's "
               "5 minutes (the worst case is read from the definition's Retry policies).")
    out.append(f"- `batch_size` at most **{MAX_BATCH_SIZE}**: a Classify child's input and result stay under "
               "256 KiB.")
    out.append(f"- `pipe_batch_size` at most **{MAX_PIPE_BATCH_SIZE}**: a pipe's batch of S3 event records stays "
               "under the 256 KiB execution input.")
    out.append(f"- memory at most **{LAMBDA_MAX_MEMORY_MB:,} MB**, and `classify_reserved_concurrency` (when set) "
               "at least `max_concurrency`.")
    return "\n".join(out) + "\n"


# -- moto's patches ------------------------------------------------------------------------------------------
def moto_patch_modules() -> list[Path]:
    """engine/moto_patches.py, or the modules of an engine/moto_patches/ package if it is split by service."""
    single = ROOT / "engine" / "moto_patches.py"
    if single.exists():
        return [single]
    return sorted((ROOT / "engine" / "moto_patches").glob("*.py"))


def moto_patches() -> list[tuple[int, str, str]]:
    """(number, title, text) of each numbered patch in the modules' docstrings.

    A patch is a line starting "N. " and the lines under it, up to a blank line or the next patch. Its
    title is its first sentence, cut at the first clause when that sentence is long.
    """
    items: list[tuple[int, list[str]]] = []
    for path in moto_patch_modules():
        open_item = False
        for line in (ast.get_docstring(ast.parse(path.read_text())) or "").splitlines():
            item = re.match(r"^(\d+)\.\s+(.*)", line)
            if item:
                items.append((int(item.group(1)), [item.group(2)]))
                open_item = True
            elif open_item and line.strip() and line[0].isspace():
                items[-1][1].append(line.strip())
            else:
                open_item = False
    found = []
    for number, body in items:
        text = re.sub(r"\s+", " ", " ".join(body)).strip()
        title = text.partition(". ")[0].rstrip(".")
        if len(title) > 100:
            cuts = [i for i in (title.find(mark) for mark in (": ", "; ", ", ", " (")) if i >= 20]
            title = title[:min(cuts)] if cuts else title[:100] + "…"
        found.append((number, title, text))
    return sorted(found)  # by number: each service's module holds its own fixes, whatever their numbers


def moto_patches_page() -> str:
    sources = ", ".join(_code(p.relative_to(ROOT).as_posix()) for p in moto_patch_modules())
    out = [GENERATED, "# moto's patches\n",
           f"What the embedded engine changes in moto, read from the docstring of {sources} when the site is "
           "built. `LocalEngine.start` installs them; each is covered by a test. Why the engine needs them: "
           "[moto and its patches](../development/moto.md).\n"]
    for number, title, text in moto_patches():
        out.append(f"## {number}. {_prose(title)} {{ #patch-{number} }}\n")
        out.append(_prose(text) + "\n")
    return "\n".join(out)


PAGES: dict[str, Callable[[], str]] = {
    "reference/cli.md": cli_page,
    "reference/settings.md": settings_page,
    "reference/context.md": context_page,
    "reference/moto-patches.md": moto_patches_page,
}


def render_pages() -> dict[str, str]:
    """Every generated page, by its path under docs/."""
    return {path: render() for path, render in PAGES.items()}


def write_pages(target: Path) -> list[Path]:
    """Write the generated pages under `target` (a docs folder), as mkdocs would serve them."""
    written = []
    for path, text in render_pages().items():
        out = target / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        written.append(out)
    return written


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: add the generated pages to the site's files, so the nav and the links can name them."""
    from mkdocs.structure.files import File

    for path, text in render_pages().items():
        files.append(File.generated(config, path, content=text))
    return files


if __name__ == "__main__":  # python docs/hooks/reference.py OUT_DIR: the pages as files, to read or diff
    for written in write_pages(Path(sys.argv[1] if len(sys.argv) > 1 else "site-reference")):
        print(written)
