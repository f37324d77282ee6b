"""How many threads a learner may use: the cores this process may run on and that other work leaves free.

OpenMP (LightGBM, torch on CPU) spin-waits for its threads; with more threads than free cores a fold can
take minutes instead of seconds while another process shares the machine. `free_cores` counts the cores of
the CPU affinity mask and the cgroup quota (containers, Kaggle), minus the load that other processes put on
them (the busy CPU time of the cores it may run on over a quarter second, less this process's own). Under a
quota, what counts is what others take of it: the other processes of this cgroup, and the host's load only where
it leaves fewer idle cores than the quota grants. Every learner's `num_threads` parameter overrides it: 0 means
"decide", a positive number is used as it is.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

CGROUP_V2_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
CGROUP_V2_STAT = Path("/sys/fs/cgroup/cpu.stat")  # usage_usec: CPU time of every process of the cgroup
CGROUP_V1_USAGE = Path("/sys/fs/cgroup/cpuacct/cpuacct.usage")  # the same in nanoseconds
PROC_STAT = Path("/proc/stat")
PROC_SELF_STAT = Path("/proc/self/stat")
SAMPLE_S = 0.25
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _affinity_cores() -> int:
    """Cores of this process's CPU affinity mask (the machine's where it is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def allowed_cores() -> int:
    """Cores this process may use: the affinity mask, capped by a cgroup CPU quota when one is set."""
    cores = _affinity_cores()
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def _cgroup_quota() -> float | None:
    """CPUs granted by the cgroup (quota / period), or None when unlimited or unknown."""
    try:
        if CGROUP_V2_MAX.is_file():
            quota, period = CGROUP_V2_MAX.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if CGROUP_V1_QUOTA.is_file() and CGROUP_V1_PERIOD.is_file():
            quota = int(CGROUP_V1_QUOTA.read_text())
            return None if quota <= 0 else quota / int(CGROUP_V1_PERIOD.read_text())
    except (OSError, ValueError):
        return None
    return None


def busy_elsewhere(window_s: float = SAMPLE_S) -> float:
    """Cores of this process's allowance that other processes keep busy, measured over `window_s`: the busy CPU
    time (/proc/stat) of the cores this process may run on less its own (/proc/self/stat), per second. Under a
    cgroup quota below those cores, the other processes of the cgroup (its CPU time less ours), or the host's load
    beyond the idle cores the quota does not need, whichever is larger: other containers on a busy host leave a
    4-CPU quota whole while 4 of its 32 cores are idle. 0.0 where /proc is not readable."""
    capped = allowed_cores() < _affinity_cores()
    try:
        start_group = _cgroup_usage_s() if capped else None
    except (OSError, ValueError, IndexError):
        start_group = None
    try:
        start_total, start_self, started = _busy_ticks(), _own_ticks(), time.monotonic()
        time.sleep(window_s)
        total, own, elapsed = _busy_ticks() - start_total, _own_ticks() - start_self, time.monotonic() - started
    except (OSError, ValueError, IndexError):
        return 0.0
    window_ticks = CLOCK_TICKS * max(elapsed, 1e-3)
    host = max(0.0, (total - own) / window_ticks)
    if start_group is None:
        return host
    try:
        group = max(0.0, (_cgroup_usage_s() - start_group) * CLOCK_TICKS - own) / window_ticks
    except (OSError, ValueError, IndexError):
        return host
    return max(group, host - (_affinity_cores() - allowed_cores()))


def _cgroup_usage_s() -> float:
    """CPU seconds the processes of this cgroup have used (cgroup v2 cpu.stat, v1 cpuacct.usage)."""
    if CGROUP_V2_STAT.is_file():
        for line in CGROUP_V2_STAT.read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
        raise ValueError(f"{CGROUP_V2_STAT} has no usage_usec")
    return int(CGROUP_V1_USAGE.read_text()) / 1e9


def _busy_ticks() -> int:
    """Non-idle CPU ticks since boot of the cores this process may run on (their `cpuN` lines of /proc/stat;
    the machine's `cpu` line where the affinity mask is unknown): load on other cores takes nothing from us."""
    lines = PROC_STAT.read_text().splitlines()
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        cpus = set()
    rows = [line for line in lines if line[3:4].isdigit() and line.startswith("cpu")
            and int(line.split()[0][3:]) in cpus] or lines[:1]
    total = 0
    for line in rows:
        values = [int(v) for v in line.split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        total += sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total


def _own_ticks() -> int:
    """CPU ticks this process (all its threads) has used: utime + stime of /proc/self/stat."""
    fields = PROC_SELF_STAT.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def free_cores() -> int:
    """Cores free for this process's numeric work now (at least 1)."""
    cores = allowed_cores()
    return max(1, min(cores, round(cores - busy_elsewhere())))


def check_num_threads(num_threads: int) -> int:
    """`num_threads` as given, refused unless 0 (use the free cores) or a positive whole number; measures nothing."""
    if not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 0:
        raise ValueError(f"num_threads must be 0 (use the free cores) or a positive number of threads, "
                         f"got {num_threads!r}")
    return num_threads


def resolve_threads(num_threads: int) -> int:
    """`num_threads` when positive, else the free cores; a negative value is an error."""
    return check_num_threads(num_threads) or free_cores()
