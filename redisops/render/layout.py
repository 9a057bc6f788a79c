"""Tables that fit the terminal without cutting what a person must read or copy.

Rich shrinks every column evenly when a table is too wide, and cuts words with `…`: host names
became `senti…` and keys could not be copied (issue 20 item 7). A `FitTable` decides itself, at
render time, for the width it is given:

1. every column gets at least its longest word; *essential* columns (host names, keys,
   patterns, fingerprints, ids) get their whole text on one line and are never dropped;
2. while that does not fit, *droppable* columns go, in the order the table names them (bars
   and histograms first, then secondary figures), and a line under the table says which;
3. when even the essential and kept columns do not fit, each row is shown as `label  value`
   lines (a vertical layout), where a value longer than the screen folds instead of being cut.

Nothing is ever ellipsised: the room left after the minimums goes to the columns that wrap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.table import Column

# Wide enough that measuring never caps a cell: measured widths are the cells' own.
_MEASURE_WIDTH = 100_000
# Cells up to this wide are never wrapped: `7.2 MiB` on two lines reads worse than a dropped
# column.
ATOM_WIDTH = 12


class FitTable(Table):
    """A Rich table that fits by dropping columns or turning vertical, never by `…`."""

    def __init__(
        self,
        *headers: Any,
        essential: Iterable[str] = (),
        drop: Iterable[str] = (),
        **options: Any,
    ) -> None:
        super().__init__(*headers, **options)
        self.essential = frozenset(essential)
        self.drop = tuple(drop)
        unknown = (self.essential | set(self.drop)) - {column.header for column in self.columns}
        if unknown:
            raise ValueError(f"no such column: {', '.join(sorted(unknown))}")
        for column in self.columns:
            if column.header in self.essential:
                column.no_wrap = True
                column.overflow = "fold"

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text

        # Each column measured once: dropping one does not change the others' cells.
        measure = options.update_width(_MEASURE_WIDTH)
        spans = [self._span(console, measure, column) for column in self.columns]
        hidden: list[str] = []
        for header in (None, *self.drop):
            if header is not None:
                hidden.append(header)
            shown = [i for i, column in enumerate(self.columns) if column.header not in hidden]
            table = self._with_columns([self.columns[i] for i in shown])
            if _fit(table, [spans[i] for i in shown], options.max_width):
                yield table
                if hidden:
                    names = ", ".join(name or "bar" for name in hidden)
                    yield Text(
                        f"not shown at {options.max_width} columns: {names} "
                        "(a wider terminal or -o json shows them)",
                        style="dim",
                    )
                return
        yield from self._vertical()

    def _span(self, console: Console, options: ConsoleOptions, column: Column) -> tuple[int, int]:
        """The narrowest and widest a column's content can be, padding not included: its
        longest word, except that a short cell (`7.2 MiB`, `no limit`) is kept whole, and an
        essential column's longest cell."""
        from rich.measure import Measurement

        low = high = 0
        cells = [column.header, *column.cells] if self.show_header else list(column.cells)
        for cell in cells:
            span = Measurement.get(console, options, cell)
            low = max(low, span.maximum if span.maximum <= ATOM_WIDTH else span.minimum)
            high = max(high, span.maximum)
        return (high if column.header in self.essential else low), high

    def _with_columns(self, columns: list[Column]) -> Table:
        """A plain Table sharing this one's rows and settings, with only `columns`."""
        table = Table.__new__(Table)
        table.__dict__.update(self.__dict__)
        table.columns = [replace(column, _index=index) for index, column in enumerate(columns)]
        return table

    def _vertical(self) -> RenderResult:
        """Each row as `header  value` lines, a blank line between rows."""
        from rich.text import Text

        if self.title:
            yield self.title if isinstance(self.title, Text) else Text(self.title, style="bold")
        labelled = [column for column in self.columns if column.header]
        cells = [list(column.cells) for column in labelled]
        for index in range(self.row_count):
            record = Table.grid(padding=(0, 2))
            record.add_column(no_wrap=True, style="dim")
            record.add_column(overflow="fold")
            for column, values in zip(labelled, cells, strict=True):
                record.add_row(Text(str(column.header)), values[index])
            if index:
                yield Text("")
            yield record
        if self.caption:
            yield self.caption if isinstance(self.caption, Text) else Text(self.caption)


def _fit(table: Table, spans: list[tuple[int, int]], max_width: int) -> bool:
    """Fix each column's width so the table fits `max_width` with no cell cut; False (and
    nothing changed) when the columns' minimums are already wider than that.

    Padding and borders are Rich's own (private, but the widths must add up as Rich's do).
    """
    padding = [table._get_padding_width(index) for index in range(len(table.columns))]
    lows = [low + pad for (low, _), pad in zip(spans, padding, strict=True)]
    highs = [high + pad for (_, high), pad in zip(spans, padding, strict=True)]
    spare = max_width - table._extra_width - sum(lows)
    if spare < 0:
        return False
    needs = [high - low for low, high in zip(lows, highs, strict=True)]
    widths = highs if sum(needs) <= spare else _share(lows, needs, spare)
    for column, width, pad in zip(table.columns, widths, padding, strict=True):
        column.width = max(1, width - pad)
    return True


def _share(lows: list[int], needs: list[int], spare: int) -> list[int]:
    """`spare` cells shared out in proportion to what each column still wants."""
    wanted = sum(needs)
    grants = [need * spare // wanted for need in needs]
    left = spare - sum(grants)
    for index in sorted(range(len(needs)), key=lambda i: needs[i] - grants[i], reverse=True):
        if left <= 0:
            break
        if grants[index] < needs[index]:
            grants[index] += 1
            left -= 1
    return [low + grant for low, grant in zip(lows, grants, strict=True)]
