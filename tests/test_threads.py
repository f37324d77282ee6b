"""Threads sized to the cores free to this process (affinity, cgroup quota, other processes' load)."""

from __future__ import annotations

import numpy as np
import pytest

from amzkit.core import threads
from amzkit.ml.featureset import FeatureSet
from amzkit.testing import feature_learner


def test_a_positive_count_is_used_as_given_and_a_negative_one_refused():
    assert threads.resolve_threads(3) == 3
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="num_threads"):
            threads.resolve_threads(bad)


def test_zero_means_the_free_cores(monkeypatch):
    monkeypatch.setattr(threads, "allowed_cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 5.2)
    assert threads.resolve_threads(0) == 3
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 7.9)
    assert threads.resolve_threads(0) == 1, "never fewer than one"
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0.0)
    assert threads.resolve_threads(0) == 8


def test_a_cgroup_quota_caps_the_cores(tmp_path, monkeypatch):
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(threads, "CGROUP_V2_MAX", cpu_max)
    cpu_max.write_text("150000 100000\n")  # 1.5 CPUs
    assert threads.allowed_cores() == 1
    cpu_max.write_text("max 100000\n")
    assert threads.allowed_cores() >= 1 and threads._cgroup_quota() is None
    cpu_max.write_text("garbage")
    assert threads._cgroup_quota() is None


def test_other_processes_load_is_measured_without_our_own(monkeypatch):
    ticks = iter([(1000, 100), (1000 + 150, 100 + 50)])  # machine busy +150 ticks, ours +50 ticks

    def fake_ticks():
        return next(ticks)

    pair = {}
    monkeypatch.setattr(threads, "_busy_ticks", lambda: pair.setdefault("b", fake_ticks())[0])
    monkeypatch.setattr(threads, "_own_ticks", lambda: pair.pop("b")[1])
    monkeypatch.setattr(threads, "CLOCK_TICKS", 100)
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    clock = iter([0.0, 1.0])
    monkeypatch.setattr(threads.time, "monotonic", lambda: next(clock))
    assert threads.busy_elsewhere() == pytest.approx(1.0)  # 100 ticks of others in one second: one core


def test_the_real_probe_gives_a_sane_answer():
    assert 1 <= threads.free_cores() <= threads.allowed_cores()
    assert threads.busy_elsewhere(0.01) >= 0.0


def test_learners_take_the_resolved_threads(monkeypatch):
    monkeypatch.setattr(threads, "allowed_cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda window_s=0.25: 2.0)
    features = FeatureSet(np.zeros((50, 1), np.float32), ["zero"], [], n_train=50)
    learner = feature_learner(features, np.ones(50), num_threads=0)
    assert learner.threads_ == 2 and learner.config_["params"]["num_threads"] == 2
    assert feature_learner(features, np.ones(50), num_threads=1).config_["params"]["num_threads"] == 1


def test_only_the_load_on_the_cores_this_process_may_use_counts(tmp_path, monkeypatch):
    """Pinned to cores 0-1 (taskset, a Slurm cpuset) beside other work on cores 2-3: that work takes nothing from
    us, yet the machine-wide count left one thread where two cores were free."""
    stat = tmp_path / "stat"

    def write(busy: list[int]) -> None:  # user ticks per core; idle 1000 each
        lines = [f"cpu{i} {b} 0 0 1000 0 0 0 0 0 0" for i, b in enumerate(busy)]
        stat.write_text(f"cpu  {sum(busy)} 0 0 {1000 * len(busy)} 0 0 0 0 0 0\n" + "\n".join(lines) + "\nintr 1\n")

    write([0, 0, 0, 0])
    monkeypatch.setattr(threads, "PROC_STAT", stat)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threads, "_own_ticks", lambda: 0)
    monkeypatch.setattr(threads, "CLOCK_TICKS", 100)
    monkeypatch.setattr(threads.time, "sleep", lambda s: write([10, 0, 100, 100]))  # others: 0.1 core on ours
    clock = iter([0.0, 1.0])
    monkeypatch.setattr(threads.time, "monotonic", lambda: next(clock))
    assert threads.busy_elsewhere() == pytest.approx(0.1)


@pytest.mark.parametrize("host_busy, group_busy, free", [(20.0, 0.0, 4), (20.0, 3.0, 1), (30.0, 0.0, 2), (0.0, 0.0, 4)])
def test_under_a_quota_only_what_others_take_of_it_counts(tmp_path, monkeypatch, host_busy, group_busy, free):
    """A container granted 4 CPUs (cgroup quota) on a 32-core host where other containers keep 20 cores busy: 12
    idle cores, the quota whole, yet the host's load was taken from the quota and 1 thread was used, not 4. The
    other processes of the cgroup take from it; the host's load only beyond the 28 cores the quota does not need."""
    stat, cpu_max, cpu_stat = tmp_path / "stat", tmp_path / "cpu.max", tmp_path / "cpu.stat"
    cpu_max.write_text("400000 100000\n")

    def write(busy_cores: float, group_s: float) -> None:  # one second of ticks at 100 a second
        lines = [f"cpu{i} {int(busy_cores * 100) if i == 0 else 0} 0 0 1000 0 0 0 0 0 0" for i in range(32)]
        stat.write_text("cpu  0 0 0 0 0 0 0 0 0 0\n" + "\n".join(lines) + "\nintr 1\n")
        cpu_stat.write_text(f"usage_usec {int(group_s * 1e6)}\nuser_usec 0\n")

    write(0.0, 0.0)
    monkeypatch.setattr(threads, "PROC_STAT", stat)
    monkeypatch.setattr(threads, "CGROUP_V2_MAX", cpu_max)
    monkeypatch.setattr(threads, "CGROUP_V2_STAT", cpu_stat, raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(32)))
    monkeypatch.setattr(threads, "_own_ticks", lambda: 0)
    monkeypatch.setattr(threads, "CLOCK_TICKS", 100)
    monkeypatch.setattr(threads.time, "sleep", lambda s: write(host_busy, group_busy))
    clock = iter([0.0, 1.0])
    monkeypatch.setattr(threads.time, "monotonic", lambda: next(clock))
    assert threads.allowed_cores() == 4
    assert threads.free_cores() == free
