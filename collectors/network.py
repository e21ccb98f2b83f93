"""Network: per interface receive/transmit bytes, packets, errors and drops per second.

All figures are rates from the kernel's counters (``psutil.net_io_counters(pernic=True,
nowrap=True)``); the first call after start reports none. ``exclude`` takes interface names or
shell patterns (``veth*``). Interfaces that have never carried a packet are skipped until they
do. At most MAX_INTERFACES interfaces are reported (sorted by name), so a
host with hundreds of container interfaces cannot flood the store.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable

import psutil

from lightkeeper.collectors.base import RateTracker, Triple
from lightkeeper.logs import get_logger

log = get_logger("collectors.network")

MAX_INTERFACES = 64
FIELDS = (
    ("network_receive_bytes_per_second", "bytes_recv"),
    ("network_transmit_bytes_per_second", "bytes_sent"),
    ("network_receive_packets_per_second", "packets_recv"),
    ("network_transmit_packets_per_second", "packets_sent"),
    ("network_receive_errors_per_second", "errin"),
    ("network_transmit_errors_per_second", "errout"),
    ("network_receive_drops_per_second", "dropin"),
    ("network_transmit_drops_per_second", "dropout"),
)


class NetworkCollector:
    name = "network"

    def __init__(self, interval: float = 5.0, exclude: Iterable[str] = ()) -> None:
        self.interval = interval
        self.exclude = list(exclude)
        self._rates = RateTracker()
        self._capped_logged = False

    def _wanted(self, nic: str) -> bool:
        return not any(fnmatch.fnmatchcase(nic, pattern) for pattern in self.exclude)

    def collect(self) -> list[Triple]:
        counters = psutil.net_io_counters(pernic=True, nowrap=True)
        # interfaces that never carried a packet (down bridges, ifb, unused tunnels) are skipped
        # until they do: they would only add series of zeros
        names = sorted(n for n, c in counters.items()
                       if self._wanted(n) and (c.packets_recv or c.packets_sent))
        if len(names) > MAX_INTERFACES:
            if not self._capped_logged:
                log.warning("network.too_many_interfaces", count=len(names),
                            reported=MAX_INTERFACES,
                            hint="add patterns to collect.interfaces_exclude, e.g. 'veth*'")
                self._capped_logged = True
            names = names[:MAX_INTERFACES]
        now = time.monotonic()
        out: list[Triple] = []
        for nic in names:
            c = counters[nic]
            for metric, field in FIELDS:
                rate = self._rates.rate(metric, nic, float(getattr(c, field)), now)
                if rate is not None:
                    out.append((metric, nic, rate))
        return out

    def close(self) -> None:
        pass
