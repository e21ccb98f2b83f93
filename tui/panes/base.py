"""What every pane provides: a fetch run in a worker thread and a render on the main thread."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from textual.containers import Vertical

from lightkeeper.tui.widgets.table import RowsTable

if TYPE_CHECKING:
    from lightkeeper.tui.app import LightkeeperApp


@dataclass(frozen=True)
class Request:
    """What a fetch may use: captured on the main thread, read in the worker thread."""

    window: str
    now: float
    params: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] | None = None


class Pane(Vertical):
    pane_id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    # charts refresh no faster than the collection interval; lists and progress faster
    chart_pane: ClassVar[bool] = False
    # the agent's change topics (lightkeeper.contracts.changes.TOPICS) this pane shows: when
    # one moves the pane refreshes (if shown); besides these every fetch reads the status
    topics: ClassVar[frozenset[str]] = frozenset()

    @property
    def lk(self) -> LightkeeperApp:
        return self.app  # type: ignore[return-value]

    def params(self) -> dict[str, Any]:
        """Filters and selections the next fetch needs (main thread)."""
        return {}

    def fetch(self, client: Any, req: Request) -> Any:
        """Read from the agent (worker thread: no widget access here)."""
        return None

    def show(self, data: Any, req: Request) -> None:
        """Render what ``fetch`` returned (main thread)."""

    def on_activated(self) -> None:
        """Called when the pane becomes visible."""

    def focus_default(self) -> None:
        """Give focus to the pane's main widget: the pane's keys are bound on the pane, so
        they act only while focus is inside it (Textual's binding chain)."""
        for widget in self.query("*"):
            if widget.focusable:
                widget.focus()
                return

    def settled(self) -> bool:
        """Everything the last ``show`` started is on screen (mounts, deferred renders): a
        table's column widths are computed on the next idle after rows are added."""
        return all(t.settled() for t in self.query(RowsTable))
