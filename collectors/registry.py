"""Build the configured collectors: system ones at ``collect.system_interval``, per-user
directories at ``collect.userdir_interval``."""

from __future__ import annotations

from lightkeeper.collectors.base import Collector
from lightkeeper.collectors.cpu import CpuCollector
from lightkeeper.collectors.disk import DiskCollector
from lightkeeper.collectors.memory import MemoryCollector
from lightkeeper.collectors.network import NetworkCollector
from lightkeeper.collectors.processes import ProcessCollector
from lightkeeper.collectors.userdirs import UserDirCollector
from lightkeeper.config import Config


def build_collectors(cfg: Config, watch: bool = True) -> list[Collector]:
    system = float(cfg["collect.system_interval"])
    return [
        CpuCollector(system),
        MemoryCollector(system),
        DiskCollector(system, exclude=cfg["collect.mounts_exclude"],
                      always=[cfg.path("paths.data_root"), cfg.path("paths.state_dir")]),
        NetworkCollector(system, exclude=cfg["collect.interfaces_exclude"]),
        ProcessCollector(system, pidfiles=cfg["collect.process_pidfiles"],
                         patterns=cfg["collect.process_patterns"],
                         data_root=cfg.path("paths.data_root"),
                         spool_dir=cfg.path("paths.spool_dir")),
        UserDirCollector(cfg.path("paths.data_root"),
                         interval=float(cfg["collect.userdir_interval"]),
                         full_rescan=float(cfg["collect.userdir_full_rescan"]),
                         growth_window=float(cfg["collect.userdir_growth_window"]),
                         watch=watch),
    ]
