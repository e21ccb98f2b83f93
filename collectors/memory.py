"""Memory: used, available and total RAM, swap used and total, available ratio."""

from __future__ import annotations

import psutil

from lightkeeper.collectors.base import Triple


class MemoryCollector:
    name = "memory"

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval

    def collect(self) -> list[Triple]:
        vm = psutil.virtual_memory()
        sw = psutil.swap_memory()
        return [
            ("memory_total_bytes", "", float(vm.total)),
            ("memory_used_bytes", "", float(vm.used)),
            ("memory_available_bytes", "", float(vm.available)),
            ("memory_available_ratio", "", vm.available / vm.total if vm.total else 0.0),
            ("memory_swap_total_bytes", "", float(sw.total)),
            ("memory_swap_used_bytes", "", float(sw.used)),
        ]

    def close(self) -> None:
        pass
