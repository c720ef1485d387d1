"""Markdown tables: the one writer behind every table in the generated documents."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["markdown_rows"]


def markdown_rows(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a Markdown table: the header, its rule, then one line per row of cells."""
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
