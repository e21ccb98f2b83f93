"""Tuning: a form with one field per parameter (unit, range, meaning, effect class), inline
errors from the agent's validation, a diff of pending edits, apply with a note, history,
diff between any two versions, revert with confirmation, latency comparison between versions."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import Input, Static

from lightkeeper.client import default_actor
from lightkeeper.contracts.tuning import CommitResponse, ServersResponse, ServeServer
from lightkeeper.fmt import clock_time, ms, shorten
from lightkeeper.tui import agentdata
from lightkeeper.tui.actions import bindings
from lightkeeper.tui.agentdata import Failed, problem
from lightkeeper.tui.dialogs import NoteDialog
from lightkeeper.tui.panes.base import Pane, Request
from lightkeeper.tui.widgets.fields import FieldInput
from lightkeeper.tui.widgets.table import RowsTable

EFFECT_STYLE = {"next_operation": "green", "new_documents": "cyan", "restart": "yellow",
                "rebuild": "bold red"}


def fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def diff_block(title: str, rows: list[dict[str, Any]], empty: str) -> Group:
    """A diff as two lines per parameter (name and effect class, then old → new), so values
    are never cut however narrow the panel is: they wrap instead."""
    out: list[Any] = [Text(title, style="bold")]
    if not rows:
        out.append(Text(empty, style="dim"))
    for r in rows:
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(r["key"], style="bold")
        head.append("  ")
        head.append(r["effect"], style=EFFECT_STYLE.get(r["effect"], ""))
        change = Text("  ")
        change.append(fmt_value(r["old"]) or '""', style="red")
        change.append(" → ")
        change.append(fmt_value(r["new"]) or '""', style="green")
        out += [head, change]
    return Group(*out)


def compare_block(a: int, b: int, rows: list[dict[str, Any]]) -> Group:
    """p95 latency per operation under versions a and b: two lines per operation."""
    out: list[Any] = [Text(f"Latency p95: v{a} → v{b}", style="bold")]
    if not rows:
        out.append(Text("(no LightRAG operations under these versions)", style="dim"))
    for x in rows:
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(x["op"] + (f"/{x['mode']}" if x.get("mode") else ""), style="bold")
        head.append(f"  n {x['a_count']} → {x['b_count']}", style="dim")
        if x.get("thin_evidence"):
            head.append("  thin", style="yellow")
        ch = x.get("change_p95")
        line = Text(f"  {ms(x.get('a_p95'))} → {ms(x.get('b_p95'))}  ")
        line.append("-" if ch is None else f"{ch * 100:+.0f}%",
                    style="" if ch is None else "red" if ch > 0.05 else
                    "green" if ch < -0.05 else "")
        out += [head, line]
    return Group(*out)


class ParamInput(FieldInput):
    def __init__(self, name: str, value: str) -> None:
        super().__init__(value=value, id=f"p-{name}", classes="param-input")
        self.param = name


class ParamField:
    """One parameter in the form's grid: name and unit, value field; below them its range,
    meaning and inline error, and its effect class. No containers, so the form lays out fast."""

    def __init__(self, p: dict[str, Any], value: Any) -> None:
        self.p = p
        self.error: str | None = None
        name = Text(p["name"], no_wrap=True, overflow="ellipsis")
        if p.get("unit"):
            name.append(f" ({p['unit']})", style="dim")
        self.name_w = Static(name, classes="param-name", id=f"field-{p['name']}")
        self.input = ParamInput(p["name"], fmt_value(value))
        self.info_w = Static(self._info(), classes="param-info", id=f"info-{p['name']}")
        self.effect_w = Static(Text(p["effect"], style=EFFECT_STYLE.get(p["effect"], "")),
                               classes="param-effect")

    @property
    def widgets(self) -> list[Any]:
        """Grid order: name | field, then meaning | effect class."""
        return [self.name_w, self.input, self.info_w, self.effect_w]

    def _info(self) -> Text:
        p = self.p
        info = Text(no_wrap=False)
        if p.get("allowed"):
            info.append(p["allowed"] + ". ", style="italic")
        info.append(p.get("meaning") or "", style="dim")
        if self.error:
            info.append("\n" + self.error, style="bold red")
        return info

    def set_error(self, text: str | None) -> None:
        if text == self.error:
            return
        self.error = text
        self.info_w.update(self._info())
        for w in self.widgets:
            w.set_class(bool(text), "invalid")


def server_notices(servers: list[ServeServer]) -> list[str]:
    """The agent's plain sentences for ``lightkeeper serve`` processes that need a restart
    (or whose state is unknown); nothing when all is well."""
    return [s["notice"] for s in servers if s["notice"]]


class TuningPane(Pane):
    pane_id = "tuning"
    topics = frozenset({"tuning"})
    BINDINGS = bindings("tuning")
    title = "Tuning"
    DEFAULT_CSS = """
    #tuning-servers { height: auto; display: none; color: $text-warning;
                      background: $warning-muted; padding: 0 1; }
    #tuning-servers.-shown { display: block; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.model: list[dict[str, Any]] | None = None
        self.active: dict[str, Any] = {}  # name -> value of the latest version
        self.version: int | None = None
        self.history: list[dict[str, Any]] = []
        self.pending: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.validated_seq = -1
        self.seq = 0
        self.marked: int | None = None
        self.panel_mode = "pending"
        self._validate_timer: Timer | None = None
        self._last_validation: dict[str, Any] | None = None
        self._built = False
        self.fields: dict[str, ParamField] = {}
        self._mounting: Any = None

    def compose(self) -> ComposeResult:
        yield Static(id="tuning-head", classes="filterbar")
        yield Static(id="tuning-servers")
        with Horizontal(id="tuning-body"):
            form = VerticalScroll(id="tuning-form")
            form.can_focus = False  # tab goes from the history straight into the first field
            yield form
            with Vertical(id="tuning-side"):
                with VerticalScroll(id="tuning-panel-scroll"):
                    yield Static(id="tuning-panel")
                yield RowsTable(id="tuning-history", cursor_type="row", zebra_stripes=True)

    def settled(self) -> bool:
        return super().settled() and self._built and all(f.input.is_mounted and f.input.size.width
                                   for f in self.fields.values())

    def on_mount(self) -> None:
        self.query_one("#tuning-history", RowsTable).add_columns(
            "ver", "time", "actor", "note", "changes")

    def focus_default(self) -> None:
        self.query_one("#tuning-history", RowsTable).focus()

    def action_edit(self) -> None:
        """Into the form: the first field (or the first one with a pending edit)."""
        inputs = list(self.query(ParamInput))
        pending = [i for i in inputs if i.param in self.pending]
        if pending or inputs:
            # at once, not after the queued keys: "e123" typed fast must land in the field
            self.screen.set_focus((pending or inputs)[0])

    # -- data -------------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {"need_model": self.model is None}

    def fetch(self, client: Any, req: Request) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if req.params.get("need_model"):
            model = agentdata.call(client, "tuning.params")
            out["model"] = model if isinstance(model, Failed) else model["params"]
        out["show"] = agentdata.call(client, "tuning.show")
        history = agentdata.call(client, "tuning.history", limit=100)
        out["history"] = history if isinstance(history, Failed) else history["versions"]
        out["servers"] = agentdata.call(client, "tuning.servers")
        return out

    def show(self, data: dict[str, Any], req: Request) -> None:
        trouble = problem(data.get("model")) or problem(data["show"]) or problem(data["history"])
        if trouble:
            self.query_one("#tuning-head", Static).update(Text(" " + trouble, style="dim"))
            return
        if "model" in data and self.model is None:
            self.model = data["model"]
        shown = data["show"]
        new_active = {r["name"]: r["value"] for r in shown["params"]}
        version_changed = shown["version"] != self.version
        self.active = new_active
        self.version = shown["version"]
        if not self._built and self.model is not None:
            form = self.query_one("#tuning-form", VerticalScroll)
            self.fields = {p["name"]: ParamField(p, self.active.get(p["name"]))
                           for p in self.model}
            self._mounting = form.mount_all([w for f in self.fields.values() for w in f.widgets])
            self._built = True
        elif version_changed:
            for inp in self.query(ParamInput):
                if inp.param not in self.pending:
                    inp.value = fmt_value(self.active.get(inp.param))
        self.history = data["history"]
        self.query_one("#tuning-history", RowsTable).set_rows([
            (str(v["version"]), [
                f"{'A ' if v['version'] == self.marked else ''}{v['version']}",
                clock_time(v.get("ts"), True), shorten(v.get("actor"), 16),
                shorten(v.get("note"), 40), shorten(", ".join(v.get("changes") or []), 40)])
            for v in self.history])
        self._head()
        servers: ServersResponse | Failed | None = data.get("servers")
        self._servers([] if servers is None or isinstance(servers, Failed)
                      else server_notices(servers["servers"]))
        if self.panel_mode == "pending":
            self._pending_panel()

    def _servers(self, notices: list[str]) -> None:
        """A visible notice naming each ``lightkeeper serve`` that needs a restart."""
        box = self.query_one("#tuning-servers", Static)
        box.set_class(bool(notices), "-shown")
        box.update(Text("\n".join(f"⚠ {n}" for n in notices)))

    def _head(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" active version {self.version}", style="bold")
        latest = self.history[0] if self.history else {}
        if latest:
            t.append(f" by {latest.get('actor')}: {latest.get('note')}", style="dim")
        if self.pending:
            bad = sum(1 for k in self.pending if k in self.errors)
            t.append(f"   {len(self.pending)} pending edit{'s' if len(self.pending) > 1 else ''}",
                     style="bold yellow")
            if bad:
                t.append(f", {bad} invalid", style="bold red")
        if self.marked is not None:
            t.append(f"   A = v{self.marked}", style="cyan")
        self.query_one("#tuning-head", Static).update(t)

    # -- editing ----------------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        if not isinstance(event.input, ParamInput):
            return
        name = event.input.param
        if event.value == fmt_value(self.active.get(name)):
            self.pending.pop(name, None)
        else:
            self.pending[name] = event.value
        self.seq += 1
        if self._validate_timer is not None:
            self._validate_timer.stop()
        self._validate_timer = self.set_timer(0.3, self._validate)
        self.panel_mode = "pending"
        self._head()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if isinstance(event.input, ParamInput):
            event.stop()
            self.screen.focus_next(ParamInput)

    def _validate(self) -> None:
        seq = self.seq
        changes = dict(self.pending)
        if not changes:
            self._apply_validation(seq, {"ok": True, "errors": {}, "diff": [], "warnings": {}})
            return
        self.lk.run_agent("validate", lambda c: c.call("tuning.validate", changes=changes),
                          lambda r: self._apply_validation(seq, r))

    def _apply_validation(self, seq: int, result: dict[str, Any]) -> None:
        if seq != self.seq:
            return  # the fields changed since
        self.validated_seq = seq
        self._last_validation = result
        self.errors = {k.rsplit(".", 1)[-1]: v for k, v in (result.get("errors") or {}).items()}
        for f in self.fields.values():
            f.set_error(self.errors.get(f.p["name"]) if f.p["name"] in self.pending else None)
        self._head()
        if self.panel_mode == "pending":
            self._pending_panel()

    def _pending_panel(self) -> None:
        panel = self.query_one("#tuning-panel", Static)
        if not self.pending:
            panel.update(Group(Text("Pending edits", style="bold"),
                               Text("none: e (or tab) moves into the form, enter to the "
                                    "next field, esc back to the history", style="dim")))
            return
        v = self._last_validation if self.validated_seq == self.seq else None
        if v is None:
            panel.update(Text("checking...", style="dim"))
            return
        parts: list[Any] = [diff_block(f"Pending edits vs active v{self.version}",
                                       v.get("diff") or [], "(no effective change)")]
        for k, e in (v.get("errors") or {}).items():
            parts.append(Text(f"{k}: {e}", style="bold red"))
        for k, w in (v.get("warnings") or {}).items():
            parts.append(Text(f"{k}: {w}", style="yellow"))
        parts.append(Text("a apply (asks for a note)  u undo edits" if v.get("ok")
                          else "fix the errors to apply", style="dim"))
        panel.update(Group(*parts))

    # -- actions ----------------------------------------------------------------------------
    def selected_version(self) -> int | None:
        table = self.query_one("#tuning-history", RowsTable)
        if not self.history or table.cursor_row < 0:
            return None
        return int(self.history[min(table.cursor_row, len(self.history) - 1)]["version"])

    def action_tuning_apply(self) -> None:
        if not self.pending:
            self.lk.notify("no pending edits", timeout=3)
            return
        v = self._last_validation if self.validated_seq == self.seq else None
        if v is None:
            self.lk.notify("still checking the edits; try again in a moment", timeout=3)
            return
        if not v.get("ok"):
            self.lk.notify("cannot apply: " + "; ".join(
                f"{k}: {e}" for k, e in (v.get("errors") or {}).items()),
                severity="error", timeout=6)
            return
        changes = dict(self.pending)
        body = Group(*[Text(f"{r['key']}: {fmt_value(r['old'])} -> {fmt_value(r['new'])}  "
                            f"[{r['effect']}]") for r in v.get("diff") or []],
                     *[Text(e, style="dim") for e in v.get("effects") or []])

        def done(note: str | None) -> None:
            if not note:
                return

            def applied(r: CommitResponse) -> None:
                self.pending.clear()
                self.errors.clear()
                self.seq += 1
                self.lk.notify(f"tuning version {r['version']} applied", timeout=4)
                notices = server_notices(r.get("servers", []))
                if notices:
                    self.lk.notify("\n".join(notices), severity="warning", timeout=12)
                    self._servers(notices)

            self.lk.run_agent("apply", lambda c: c.call(
                "tuning.set", changes=changes, note=note, actor=default_actor(),
                source="console"), applied)

        self.lk.push_screen(NoteDialog(f"Apply {len(changes)} edit(s) as a new version?", body),
                            done)

    def action_tuning_discard(self) -> None:
        self.pending.clear()
        self.errors.clear()
        self.seq += 1
        for inp in self.query(ParamInput):
            inp.value = fmt_value(self.active.get(inp.param))
        for f in self.fields.values():
            f.set_error(None)
        self.pending.clear()
        self.panel_mode = "pending"
        self._pending_panel()
        self._head()

    def action_tuning_mark(self) -> None:
        self.marked = self.selected_version()
        self.lk.notify(f"version {self.marked} marked as A", timeout=2)
        self._head()
        self.lk.refresh_now()

    def _pair(self) -> tuple[int, int] | None:
        b = self.selected_version()
        if b is None:
            return None
        a = self.marked
        if a is None or a == b:
            a = b - 1 if b > 1 else None
        if a is None:
            self.lk.notify("mark another version with m first", severity="warning", timeout=3)
            return None
        return a, b

    def action_tuning_diff(self) -> None:
        pair = self._pair()
        if pair is None:
            return
        a, b = pair

        def shown(r: dict[str, Any]) -> None:
            self.panel_mode = "diff"
            self.query_one("#tuning-panel", Static).update(Group(
                diff_block(f"v{a} → v{b}", r.get("rows") or [], "(no differences)"),
                Text("edit a field to return to pending edits", style="dim")))

        self.lk.run_agent("diff", lambda c: c.call("tuning.diff", a=a, b=b), shown)

    def action_tuning_compare(self) -> None:
        pair = self._pair()
        if pair is None:
            return
        a, b = pair

        def shown(r: dict[str, Any]) -> None:
            self.panel_mode = "compare"
            self.query_one("#tuning-panel", Static).update(Group(
                compare_block(a, b, r.get("rows") or []),
                Text("thin: fewer than 30 operations on one side", style="dim")))

        self.lk.run_agent("compare", lambda c: c.call("rag.compare_versions", a=a, b=b), shown)

    def action_tuning_revert(self) -> None:
        n = self.selected_version()
        if n is None:
            return
        if n == self.version:
            self.lk.notify(f"version {n} is already active", timeout=3)
            return

        def ask(r: dict[str, Any]) -> None:
            rows = r.get("rows") or []
            body = Group(Text(f"A new version equal to v{n} is created; the history keeps "
                              "everything.\n"),
                         *[Text(f"{x['key']}: {fmt_value(x['old'])} -> {fmt_value(x['new'])}  "
                                f"[{x['effect']}]") for x in rows] or [Text("(no differences)")])

            def done(note: str | None) -> None:
                if note:
                    self.lk.run_agent("revert", lambda c: c.call(
                        "tuning.revert", version=n, note=note, actor=default_actor()),
                        lambda res: self.lk.notify(
                            f"reverted to v{n}: now version {res.get('version')}", timeout=4))

            self.lk.push_screen(NoteDialog(f"Revert to version {n}?", body,
                                           confirm_label="Revert"), done)

        self.lk.run_agent("revert", lambda c: c.call("tuning.diff", a=self.version, b=n), ask)
