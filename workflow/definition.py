"""Load the one state machine definition, fill its ${Placeholders}, and adapt it for the local engine."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

DEFINITION_FILE = Path(__file__).with_name("definition.asl.json")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


class DefinitionError(ValueError):
    pass


def definition_text() -> str:
    return DEFINITION_FILE.read_text()


def placeholders(text: str | None = None) -> set[str]:
    return set(_PLACEHOLDER.findall(definition_text() if text is None else text))


def render(substitutions: dict[str, str], text: str | None = None) -> dict[str, Any]:
    """The definition with every placeholder filled, as CDK's DefinitionSubstitutions fill it."""
    text = definition_text() if text is None else text
    missing = placeholders(text) - substitutions.keys()
    if missing:
        raise DefinitionError(f"no value for placeholder(s): {', '.join(sorted(missing))}")
    filled = _PLACEHOLDER.sub(lambda m: substitutions[m.group(1)], text)
    return dict(json.loads(filled))


def adapt_for_local_engine(definition: dict[str, Any]) -> dict[str, Any]:
    """The one adaptation the embedded engine needs, and nothing else.

    moto runs Distributed Map children only as STANDARD workflows (EXPRESS is a parse error
    there), so EXPRESS children become STANDARD. Each child runs the same states either way.
    """
    adapted = copy.deepcopy(definition)

    def visit(states: dict[str, Any]) -> None:
        for state in states.values():
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if not processor:
                continue
            config = processor.get("ProcessorConfig", {})
            if config.get("ExecutionType") == "EXPRESS":
                config["ExecutionType"] = "STANDARD"
            visit(processor.get("States", {}))

    visit(adapted["States"])
    return adapted
