"""Device side: Markdown tables for the summaries edgecnn writes (conversion, benchmark, demo report)."""

from __future__ import annotations

from collections.abc import Sequence


def cell(text: object) -> str:
    """One table cell: a '|' would end the cell early (``max|dp|`` split the conversion table) and a line break
    would end the row."""
    return " ".join(str(text).splitlines()).replace("\\|", "|").replace("|", "\\|")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A GitHub-flavoured Markdown table as lines, every cell escaped."""
    line = lambda cells: "| " + " | ".join(cell(c) for c in cells) + " |"  # noqa: E731
    return [line(headers), "|" + "---|" * len(headers), *(line(r) for r in rows)]
