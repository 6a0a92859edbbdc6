"""Device side: tables that fit the terminal: columns a narrow terminal cannot hold are left out (the caption names them) and the
rest fold their cells; in a pipe every column stays (edgecnn.cli.console's width)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BORDER = 3  # rich's default box: "│ " before each cell and " " after, plus the closing "│"


@dataclass(frozen=True)
class Column:
    """A table column. ``keep`` orders what stays on a narrow terminal (higher stays longer; None: never left out);
    ``fold_to``: the narrowest width its cells may be folded to (None: never narrower than its longest line)."""

    name: str
    keep: int | None = None
    justify: str = "left"
    fold_to: int | None = None


def fitted(title: str, columns: list[Column], rows: list[list[str]], width: int) -> Any:
    """A rich Table of ``rows`` for a console ``width`` characters wide: the columns with the lowest ``keep`` are left
    out until the rest fit, folded no narrower than their ``fold_to``."""
    from rich.table import Table

    def narrowest(i: int) -> int:
        natural = max(_cell_width(columns[i].name), *(_cell_width(r[i]) for r in rows)) if rows else len(columns[i].name)
        if columns[i].fold_to is None:
            return natural
        return min(natural, max(columns[i].fold_to, _longest_word(columns[i].name, rows, i)))

    shown = list(range(len(columns)))
    droppable = [i for _, i in sorted((c.keep, i) for i, c in enumerate(columns) if c.keep is not None)]
    dropped: list[str] = []
    while 1 + sum(BORDER + narrowest(i) for i in shown) > width and droppable:
        i = droppable.pop(0)
        shown.remove(i)
        dropped.append(columns[i].name)
    caption = (
        f"left out to fit {width} columns: {', '.join(dropped)} (a wider terminal or --json shows them)" if dropped else None
    )
    table = Table(title=title, caption=caption)
    for i in shown:
        no_wrap = columns[i].fold_to is None
        table.add_column(columns[i].name, justify=columns[i].justify, overflow="fold", no_wrap=no_wrap)
    from rich.text import Text

    from edgecnn.untrusted import clean

    for r in rows:  # cells are text, never markup: a CPU name or a board's answer may hold '[' or escapes
        table.add_row(*(Text(clean(r[i])) for i in shown))
    return table


def _cell_width(text: str) -> int:
    return max((len(line) for line in str(text).splitlines()), default=0)


def _longest_word(header: str, rows: list[list[str]], i: int) -> int:
    words = [w for r in rows for w in str(r[i]).split()] + header.split()
    return max((len(w) for w in words), default=1)
