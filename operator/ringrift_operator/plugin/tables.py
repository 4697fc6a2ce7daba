"""Tables printed the way kubectl prints them: upper-case headers, columns left-aligned and
separated by three spaces, ``<none>`` for empty cells. Pure string formatting."""

from __future__ import annotations

from collections.abc import Sequence

NONE = "<none>"
PADDING = 3


def cell(value: object) -> str:
    """One cell: ``<none>`` for None or an empty string, integers as such, floats trimmed."""
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Aligned columns, headers upper-cased; the last column is not padded (as kubectl does)."""
    cells = [[h.upper() for h in headers], *[[cell(v) for v in row] for row in rows]]
    for row in cells:
        if len(row) != len(headers):
            raise ValueError(f"row {row} has {len(row)} cells, {len(headers)} headers")
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [
            text if i == len(row) - 1 else text.ljust(widths[i] + PADDING)
            for i, text in enumerate(row)
        ]
        lines.append("".join(padded).rstrip())
    return "\n".join(lines)


def format_pairs(pairs: Sequence[tuple[str, object]]) -> str:
    """``Key:   value`` lines with the values aligned (kubectl describe's top section)."""
    if not pairs:
        return ""
    width = max(len(k) for k, _ in pairs) + 1
    return "\n".join(f"{(k + ':').ljust(width + PADDING)}{cell(v)}" for k, v in pairs)
