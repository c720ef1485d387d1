"""A study's tables: cells formatted once, printed as aligned text while a run goes and written as Markdown."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from mmif_monai.io.markdown import markdown_rows

__all__ = ["Table", "format_number"]


@dataclass
class Table:
    """A table of already formatted cells, with an optional title (a Markdown heading) and notes under it."""

    columns: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)
    title: str | None = None
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def text(self) -> str:
        widths = [max([len(c)] + [len(r[i]) for r in self.rows]) for i, c in enumerate(self.columns)]

        def line(cells: Sequence[str]) -> str:  # first column left-aligned, numbers right-aligned
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        out = ([f"== {self.title}"] if self.title else []) + [line(self.columns)]
        out += ["-" * (sum(widths) + 2 * (len(widths) - 1))] + [line(r) for r in self.rows]
        return "\n".join(out + [f"   {n}" for n in self.notes])

    def markdown(self) -> str:
        out = ([f"### {self.title}", ""] if self.title else []) + markdown_rows(self.columns, self.rows)
        return "\n".join(out + [""] + ([f"- {n}" for n in self.notes] + [""] if self.notes else []))


def format_number(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (no exponent for ordinary magnitudes); ``n/a`` for None."""
    if value is None:
        return "n/a"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(value)))) if value else 0
        return f"{value:,.{decimals}f}"
    return f"{value:.{digits - 1}e}"
