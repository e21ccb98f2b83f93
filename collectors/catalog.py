"""Every metric the collectors emit: its label and meaning (for HELP texts and docs).

``PER_USER`` metrics carry a user id as label and must never become Prometheus labels; the
``userdir_*`` metrics with label "" are already aggregates.
"""

from __future__ import annotations

# metric -> (label, help)
METRICS: dict[str, tuple[str, str]] = {
    "cpu_usage_ratio": ("'' (all) or cpuN", "Share of CPU time not idle or in iowait (0-1)."),
    "cpu_iowait_ratio": ("''", "Share of CPU time waiting for I/O (0-1)."),
    "cpu_load_average": ("1m, 5m, 15m", "Load average."),
    "cpu_cores": ("''", "Logical CPUs."),
    "memory_total_bytes": ("''", "Physical memory."),
    "memory_used_bytes": ("''", "Memory used (psutil's definition, without caches)."),
    "memory_available_bytes": ("''", "Memory available to new work without swapping."),
    "memory_available_ratio": ("''", "memory_available_bytes / memory_total_bytes."),
    "memory_swap_total_bytes": ("''", "Swap space."),
    "memory_swap_used_bytes": ("''", "Swap in use."),
    "disk_total_bytes": ("mount point", "Filesystem size."),
    "disk_used_bytes": ("mount point", "Filesystem space used (total - free incl. reserved)."),
    "disk_free_bytes": ("mount point", "Space an unprivileged writer can still use."),
    "disk_free_ratio": ("mount point", "free / (used + free), i.e. 1 - df's Use%."),
    "disk_inodes_capacity": ("mount point", "Inodes the filesystem has."),
    "disk_inodes_free": ("mount point", "Inodes still free for unprivileged users."),
    "disk_inodes_free_ratio": ("mount point", "disk_inodes_free / disk_inodes_capacity."),
    "disk_read_bytes_per_second": ("mount point or device", "Bytes read per second."),
    "disk_write_bytes_per_second": ("mount point or device", "Bytes written per second."),
    "disk_reads_per_second": ("mount point or device", "Read operations per second."),
    "disk_writes_per_second": ("mount point or device", "Write operations per second."),
    "network_receive_bytes_per_second": ("interface", "Bytes received per second."),
    "network_transmit_bytes_per_second": ("interface", "Bytes sent per second."),
    "network_receive_packets_per_second": ("interface", "Packets received per second."),
    "network_transmit_packets_per_second": ("interface", "Packets sent per second."),
    "network_receive_errors_per_second": ("interface", "Receive errors per second."),
    "network_transmit_errors_per_second": ("interface", "Transmit errors per second."),
    "network_receive_drops_per_second": ("interface", "Received packets dropped per second."),
    "network_transmit_drops_per_second": ("interface", "Outgoing packets dropped per second."),
    "process_resident_memory_bytes": ("agent or name-pid", "Resident memory of the process."),
    "process_cpu_usage_ratio": ("agent or name-pid",
                                "CPU seconds per second (1.0 = one full core)."),
    "process_threads": ("agent or name-pid", "Threads of the process."),
    "process_open_fds": ("agent or name-pid", "Open file descriptors of the process."),
    "process_watched": ("''", "Processes watched (the agent included)."),
    "userdir_bytes": ("user", "Apparent size of the user's files."),
    "userdir_files": ("user", "Regular files in the user's directory."),
    "userdir_growth_bytes_per_second": ("user",
                                        "Change of userdir_bytes over the growth window."),
    "userdir_users": ("''", "User directories under the data root."),
    "userdir_total_bytes": ("''", "Sum of userdir_bytes over all users."),
    "userdir_total_files": ("''", "Sum of userdir_files over all users."),
    "userdir_scanned_users": ("''", "Users rescanned in the last pass (dirty or full rescan)."),
    "userdir_unreadable_users": ("''", "User directories the agent may not read (logged)."),
    "userdir_full_rescan": ("''", "1 if the last pass was a full rescan, else 0."),
    "userdir_scan_seconds": ("''", "Duration of the last pass."),
    "userdir_data_root_present": ("''", "1 if the data root exists, else 0."),
    "userdir_watcher_ok": ("''", "0 while the change watcher is failing (full rescans only)."),
}

PER_USER = frozenset({"userdir_bytes", "userdir_files", "userdir_growth_bytes_per_second"})
