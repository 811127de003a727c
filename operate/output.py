"""How the CLI prints: Rich tables on a wide terminal, one plain line a row anywhere else, errors on one line.

With no terminal (a pipe, a file, CI) a table is plain text: a header line, then one line a row,
columns padded and never wrapped or cut, so ids, URIs and links can be copied or cut out with
`awk`. On a terminal too narrow for a table's key columns (ids, links) whole, the same plain form is
printed and the terminal wraps the long lines itself, without cutting them. `--json` is the
stable interface for scripts; this text is for people.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

# Each column of a Rich table costs its padding and a border beside its text.
_CELL_OVERHEAD = 3
_NARROWEST_WRAPPED_COLUMN = 12


@dataclass(frozen=True)
class Column:
    name: str
    key: bool = False  # an id, URI or link: printed whole or the table is printed plain
    right: bool = False
    wrap: bool = False  # free text (a reason): the one kind of column a table may wrap to fit


def plain(cell: str) -> str:
    """A cell's text without its Rich markup."""
    return Text.from_markup(cell).plain


def say(console: Console, text: str) -> None:
    """One line of text, never broken by Rich: a terminal wraps it for the eye, and a URI in it stays whole."""
    console.print(text, highlight=False, soft_wrap=True)


def one_line(message: str) -> str:
    """Errors are one line whatever their cause: newlines in a cause become spaces."""
    return " ".join(message.split())


def print_table(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[str]],
                title: str | None = None) -> None:
    if console.is_terminal and _fits(console.width, columns, rows):
        table = Table(title=title, min_width=len(plain(title)) if title else None)  # a title is never wrapped
        for index, column in enumerate(columns):
            justify: Literal["left", "right"] = "right" if column.right else "left"
            if column.wrap:
                table.add_column(column.name, overflow="fold", justify=justify)
            else:  # ids, statuses, numbers: whole, or the table is not printed as a table
                widest = max([len(column.name)] + [len(plain(row[index])) for row in rows])
                table.add_column(column.name, no_wrap=True, min_width=widest, justify=justify)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    _print_plain(console, columns, rows, title)


def _fits(width: int, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> bool:
    needed = 1
    for index, column in enumerate(columns):
        cells = [len(column.name)] + [len(plain(row[index])) for row in rows]
        needed += _CELL_OVERHEAD + (min(max(cells), _NARROWEST_WRAPPED_COLUMN) if column.wrap else max(cells))
    return needed <= width


def _print_plain(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[str]],
                 title: str | None) -> None:
    cells = [[plain(cell) for cell in row] for row in rows]
    widths = [max([len(column.name)] + [len(row[i]) for row in cells]) for i, column in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        padded = [value.rjust(widths[i]) if columns[i].right else value.ljust(widths[i])
                  for i, value in enumerate(values)]
        return "  ".join(padded).rstrip()

    if title:
        console.out(title, highlight=False)
    # console.out: no markup, no highlighting, no wrapping: the line as it is.
    console.out(line([column.name for column in columns]), highlight=False)
    for row in cells:
        console.out(line(row), highlight=False)
