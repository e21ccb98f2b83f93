"""The prune dialog's plan, rendered from a real forget dry run: each snapshot it would forget
by short id, time and size (a forget summary names snapshots by reference, not whole)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from lightkeeper.backup.prune import forget
from lightkeeper.backup.repository import Repository
from lightkeeper.backup.retention import Policy
from lightkeeper.backup.snapshot import BackupOptions, run_backup
from lightkeeper.fmt import human_bytes
from lightkeeper.tui.panes.backups import prune_plan_text
from tests.datacopy import generated


def test_plan_lists_each_snapshot_forgotten_with_its_size(tmp_path: Path) -> None:
    root = tmp_path / "data"
    generated(root, users=2, seed=5, total_mb=1)
    repo = Repository.init(tmp_path / "repo", tmp_path / "keys" / "repo.key")
    try:
        old = [run_backup(repo, BackupOptions(root)) for _ in range(2)]
        run_backup(repo, BackupOptions(root))
        plan = forget(repo, Policy(last=1), dry_run=True)
    finally:
        repo.close()
    console = Console(width=100, record=True)
    console.print(prune_plan_text(plan))
    text = console.export_text()
    assert "Forgets 2 snapshots (keeps 1):" in text, text
    for s in old:
        line = next(x for x in text.splitlines() if s["snapshot_id"][:8] in x)
        assert human_bytes(s["bytes_total"]) in line, line
