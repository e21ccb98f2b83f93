"""A DataTable that is refilled from each poll: it skips the refill when the rows did not
change (no repaint, the cursor stays) and never shows lines cached with stale column widths."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text
from textual.widgets import DataTable


class RowsTable(DataTable):
    _shown_rows: tuple[Any, ...] | None = None

    def set_rows(self, rows: Sequence[tuple[str, Sequence[Any]]]) -> bool:
        """Replace the rows (``(key, cells)`` each); False when nothing changed."""
        signature = tuple((key, tuple(_plain(c) for c in cells)) for key, cells in rows)
        if signature == self._shown_rows:
            return False
        self._shown_rows = signature
        row = self.cursor_row
        self.clear()
        for key, cells in rows:
            self.add_row(*(_literal(c) for c in cells), key=key)
        if rows:
            self.move_cursor(row=min(max(row, 0), len(rows) - 1))
        return True

    def settled(self) -> bool:
        """The column widths are measured (Textual does it on the next idle after a refill)."""
        return not self._require_update_dimensions

    def _update_dimensions(self, new_rows: Iterable[Any]) -> None:
        # Textual keeps the lines it rendered before the column widths were measured (its
        # caches are cleared here only for auto-height rows): a table refilled and painted
        # in the same frame kept its header-only widths until the next scroll.
        super()._update_dimensions(new_rows)
        self._clear_caches()  # rows, cells and lines rendered at the old widths
        self.refresh()


def _literal(cell: Any) -> Any:
    """A str cell as Text: DataTable parses str cells as markup, and a note, actor or error
    from the agent ("[bold]x", "[/]") must show as typed, never style or break the table."""
    return Text(cell) if isinstance(cell, str) else cell


def _plain(cell: Any) -> Any:
    if isinstance(cell, Text):
        return (cell.plain, str(cell.style))
    return cell
