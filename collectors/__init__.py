"""psutil system, process and per-user directory collectors (contract in ``collectors.base``)."""

from lightkeeper.collectors.registry import build_collectors

__all__ = ["build_collectors"]
