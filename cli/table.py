"""Plain-text tables for the command line."""

__all__ = ["format_table"]


def format_table(header, rows):
    """Render rows of values as an aligned text table."""
    cells = [list(map(str, header))] + [[str(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(value.rjust(width) for value, width in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
