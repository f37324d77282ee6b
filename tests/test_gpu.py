"""Device choice (core.gpu) on GPUs torch cannot run on, and bf16 on cards without it: CPU tests by pretending."""

from __future__ import annotations

import pytest
import torch

from amzkit.core.gpu import gpu_problem, pick_device, usable_gpus
from amzkit.ml.torch_fit import autocast_dtype, resolve_device
from amzkit.stages.devices import resolve_devices
from amzkit.testing import pretend_gpus

P100 = {"capability": (6, 0), "name": "Tesla P100-PCIE-16GB"}


def test_a_t4_is_used_and_a_p100_is_named_as_unsupported_by_this_torch(monkeypatch):
    pretend_gpus(monkeypatch)
    assert gpu_problem(0) is None and pick_device("auto") == torch.device("cuda") and usable_gpus() == [0]
    pretend_gpus(monkeypatch, **P100, count=2)
    assert "Tesla P100-PCIE-16GB, compute capability 6.0) is not supported" in gpu_problem(0)
    assert usable_gpus() == []


def test_auto_on_an_unsupported_gpu_runs_on_the_cpu_with_a_warning_and_naming_it_is_an_error(monkeypatch):
    pretend_gpus(monkeypatch, **P100)
    with pytest.warns(RuntimeWarning, match="P100.*choose a T4.*running on the CPU instead"):
        assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="P100.*sm_75.*choose a T4"):
        resolve_device("cuda")  # the torch learners' device
    pretend_gpus(monkeypatch, **P100, count=2)
    assert resolve_devices("auto", "open_clip") == ["auto"]  # 01 does not split over GPUs it cannot use


def test_ptx_and_later_minors_of_a_binary_count_as_supported(monkeypatch):
    pretend_gpus(monkeypatch, capability=(8, 9), archs=["sm_80"])  # sm_80 code runs on 8.6 and 8.9
    assert gpu_problem(0) is None
    pretend_gpus(monkeypatch, capability=(12, 1), archs=["sm_90", "compute_90"])  # PTX is compiled for later GPUs
    assert gpu_problem(0) is None
    pretend_gpus(monkeypatch, capability=(7, 0), archs=["sm_75", "compute_75"])  # nothing runs on an older one
    assert gpu_problem(0) is not None


def test_a_gpu_number_past_the_last_and_no_gpu_are_errors_that_say_so(monkeypatch):
    pretend_gpus(monkeypatch, count=2)
    assert pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(RuntimeError, match="sees 2 GPU"):
        pick_device("cuda:2")
    pretend_gpus(monkeypatch, count=0)
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="sees no GPU"):
        pick_device("cuda")


def test_bf16_asked_for_on_a_t4_is_refused_and_auto_picks_fp16_there_bf16_from_ampere(monkeypatch):
    pretend_gpus(monkeypatch)
    cuda = torch.device("cuda")
    assert autocast_dtype(cuda, "auto") == torch.float16
    with pytest.raises(ValueError, match="bf16.*7.5.*Tesla T4.*no bf16 hardware.*'auto'"):
        autocast_dtype(cuda, "bf16")
    pretend_gpus(monkeypatch, capability=(8, 0), name="A100")
    assert autocast_dtype(cuda, "bf16") == autocast_dtype(cuda, "auto") == torch.bfloat16


def test_on_mixed_gpus_only_the_supported_ones_are_spread_over_by_index(monkeypatch):
    from amzkit.ml.cv import devices_for_folds
    from amzkit.ml.finetune import FinetuneLearner

    pretend_gpus(monkeypatch, capability=[(6, 0), (7, 5), (7, 5)], count=3)
    assert resolve_devices("auto", "open_clip") == ["cuda:1", "cuda:2"]  # not cuda:0 (P100), nor a lost cuda:2
    assert devices_for_folds(FinetuneLearner(device="auto")) == ["cuda:1", "cuda:2"]
    with pytest.raises(RuntimeError, match="GPU 0"):
        pick_device("cuda")  # the current GPU (0 here): the one a fold worker set for itself


@pytest.mark.parametrize("device", ["gpu", "GPU", "CPU", ""])
def test_a_device_name_torch_does_not_know_is_named_with_the_ones_it_takes(device):
    """torch's own error ('Expected one of cpu, cuda, ipu, xpu, ... device type') names no parameter and lists
    twenty device types the kit has no use for."""
    with pytest.raises(ValueError, match=rf"device={device!r} is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        pick_device(device)
