"""The Markdown edgecnn writes renders as the tables it means (issue #31: ``max|dp|`` split the conversion table)."""

from __future__ import annotations

import re

from edgecnn import markdown as md


def _rendered_rows(text: str) -> list[int]:
    """Cells per row of the first table, as a Markdown renderer (markdown-it, rich's own parser) sees them."""
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable("table").render(text)
    return [len(re.findall(r"<t[hd]>", row)) for row in re.findall(r"<tr>(.*?)</tr>", html, re.S)]


def test_cells_holding_pipes_and_line_breaks_stay_one_cell():
    lines = md.table(["artifact", "max|dp|"], [["tflite|int8", "1e-3\n(see below)"], ["onnx", "x \\| y"]])
    assert _rendered_rows("\n".join(lines)) == [2, 2, 2]


def test_every_conversion_summary_renders_with_as_many_cells_as_headers(lenet_artifacts):
    from edgecnn.host.convert.summary import HEADERS

    text = (lenet_artifacts / "summary.md").read_text()
    counts = _rendered_rows(text)
    assert len(counts) == 1 + 6 and set(counts) == {len(HEADERS)}, counts
