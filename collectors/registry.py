"""Build the configured collectors: system ones at ``collect.system_interval``, per-user
directories at ``collect.userdir_interval``."""

from __future__ import annotations

from collectors.base import Collector
from collectors.cpu import CpuCollector
from collectors.disk import DiskCollector
from collectors.memory import MemoryCollector
from collectors.network import NetworkCollector
from collectors.processes import ProcessCollector
from collectors.userdirs import UserDirCollector
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
                         patterns=cfg["collect.process_patterns"]),
        UserDirCollector(cfg.path("paths.data_root"),
                         interval=float(cfg["collect.userdir_interval"]),
                         full_rescan=float(cfg["collect.userdir_full_rescan"]),
                         growth_window=float(cfg["collect.userdir_growth_window"]),
                         watch=watch),
    ]
