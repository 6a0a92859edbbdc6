"""Print the CLI reference (every verb's --help) as Markdown, for the README."""

from __future__ import annotations

import contextlib
import io

from edgecnn.cli import VERBS, build_parser


def main() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for verb in VERBS:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            sub.choices[verb].print_help()
        print(f"### `edgecnn {verb}`\n\n```\n{buf.getvalue().rstrip()}\n```\n")


if __name__ == "__main__":
    main()
