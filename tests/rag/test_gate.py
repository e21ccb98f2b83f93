"""The per-user write gate: a second writer (another process) waits; readers wait for writers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lightkeeper.ids import InvalidUserId
from lightkeeper.rag import gate

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from lightkeeper.rag.gate import write_gate
    root, user, release = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    with write_gate(root, user, timeout=10):
        print("held", flush=True)
        while not release.exists():
            time.sleep(0.01)
        (root / "released-marker").write_text("x")
    print("done", flush=True)
""")


@pytest.fixture
def holder(tmp_path: Path):
    """A second process holding the user's gate until ``release`` exists."""
    procs = []

    def start(user: str = "alice") -> tuple[subprocess.Popen[str], Path]:
        release = tmp_path / f"release-{len(procs)}"
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), user, str(release)],
                                stdout=subprocess.PIPE, text=True,
                                cwd=Path(__file__).resolve().parents[2])
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc, release

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_second_writer_times_out_with_a_clear_error(tmp_path: Path, holder) -> None:
    proc, release = holder()
    with pytest.raises(gate.GateTimeout, match="busy.*exclusive.*0.2 s"):
        with gate.write_gate(tmp_path, "alice", timeout=0.2):
            pass
    with pytest.raises(gate.GateTimeout, match="shared"):
        with gate.read_gate(tmp_path, "alice", timeout=0.2):
            pass
    # another user is not affected
    with gate.write_gate(tmp_path, "bob", timeout=0.2):
        pass
    release.touch()
    assert proc.wait(10) == 0


def test_second_writer_waits_then_proceeds(tmp_path: Path, holder) -> None:
    proc, release = holder()
    seen: list[bool] = []

    async def writer() -> None:
        async with gate.async_write_gate(tmp_path, "alice", timeout=30):
            # we only get here after the holder released, which it marks before releasing
            seen.append((tmp_path / "released-marker").exists())

    async def main() -> None:
        task = asyncio.create_task(writer())
        await asyncio.sleep(0.3)
        assert not task.done()  # still waiting on the holder
        release.touch()
        await task

    asyncio.run(main())
    assert seen == [True]
    assert proc.wait(10) == 0


def test_stamp_changes_on_each_write(tmp_path: Path) -> None:
    assert gate.read_stamp(tmp_path, "alice").last_write_ns == 0
    with gate.write_gate(tmp_path, "alice"):
        pass
    first = gate.read_stamp(tmp_path, "alice")
    with gate.write_gate(tmp_path, "alice"):
        pass
    second = gate.read_stamp(tmp_path, "alice")
    assert first.raw != second.raw and second.last_write_ns >= first.last_write_ns > 0
    # readers do not change it
    with gate.read_gate(tmp_path, "alice"):
        pass
    assert gate.read_stamp(tmp_path, "alice") == second


def test_gate_refuses_bad_user_ids(tmp_path: Path) -> None:
    for bad in ("../etc", "Alice", "", "a/b"):
        with pytest.raises(InvalidUserId):
            with gate.write_gate(tmp_path, bad):
                pass


def test_writer_active_sees_only_a_writer_holding_the_gate(tmp_path: Path, holder) -> None:
    from lightkeeper import gate as core_gate

    udir = tmp_path / "alice"
    assert not core_gate.writer_active(udir)  # no directory, no gate file
    with gate.read_gate(tmp_path, "alice"):  # a reader (a backup copying) is no writer
        assert not core_gate.writer_active(udir)
    proc, release = holder()
    assert core_gate.writer_active(udir)
    release.touch()
    assert proc.wait(10) == 0
    assert not core_gate.writer_active(udir)
    # the probe took nothing: a writer gets the gate at once
    with gate.write_gate(tmp_path, "alice", timeout=0.2):
        pass
    other = tmp_path / "bob"
    other.mkdir()
    (other / core_gate.LOCK_NAME).symlink_to(udir / core_gate.LOCK_NAME)
    assert not core_gate.writer_active(other)  # a symlink is not followed
