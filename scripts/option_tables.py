"""Write the option tables of docs/commands/*.md from the declarations in medssl.options.

    python scripts/option_tables.py          # rewrite the tables
    python scripts/option_tables.py --check  # exit 1 if a page differs (tests/test_cli.py does too)

Each page holds its table between the markers TABLE_BEGIN and TABLE_END of medssl.options.
"""

from __future__ import annotations

import sys
from pathlib import Path

from medssl.options import COMMANDS, TABLE_BEGIN, TABLE_END, markdown_table

DOCS = Path(__file__).resolve().parents[1] / "docs" / "commands"


def render(page: str, command: str) -> str:
    """`page` with its option table replaced by the one generated for `command`."""
    head, rest = page.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    return head + markdown_table(COMMANDS[command]) + tail


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for command in COMMANDS:
        path = DOCS / f"{command}.md"
        page = path.read_text(encoding="utf-8")
        new = render(page, command)
        if new != page:
            stale.append(path.name)
            if not check:
                path.write_text(new, encoding="utf-8")
    if stale:
        print(("differ: " if check else "rewrote: ") + ", ".join(stale))
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
