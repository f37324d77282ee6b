"""Which torch device to run on: a GPU only when this torch build has kernels for it.

Kaggle's P100 (compute capability 6.0) is not in the CUDA 12.8 builds of torch from 2.8 on: torch.cuda
still says it is available, and the first operation on it fails with "no kernel image is available". 'auto' then
runs on the CPU with a warning; naming the GPU is an error that says why. torch is imported only when called.
"""

from __future__ import annotations

import warnings


def gpu_problem(index: int = 0) -> str | None:
    """Why torch cannot run on CUDA device `index` (this build has no kernels for its compute capability), or
    None when it can. SASS for sm_XY runs on the same major version from minor Y up; PTX for compute_XY is
    compiled for any later capability. An empty architecture list (an unusual build) is taken as usable."""
    import torch  # deferred: torch is heavy

    major, minor = torch.cuda.get_device_capability(index)
    archs = torch.cuda.get_arch_list()
    capability = 10 * major + minor
    binaries = [int(arch[3:]) for arch in archs if arch.startswith("sm_") and arch[3:].isdigit()]
    portable = [int(arch[8:]) for arch in archs if arch.startswith("compute_") and arch[8:].isdigit()]
    if not archs or any(b // 10 == major and b <= capability for b in binaries) or any(
            p <= capability for p in portable):
        return None
    return (f"GPU {index} ({torch.cuda.get_device_name(index)}, compute capability {major}.{minor}) is not supported "
            f"by this torch {torch.__version__} (built for {', '.join(archs)}): choose a T4 in the Kaggle notebook's "
            "accelerator settings, or device='cpu'")


def usable_gpus() -> list[int]:
    """The indices of the CUDA devices torch sees and has kernels for ([] without CUDA)."""
    import torch  # deferred: torch is heavy

    if not torch.cuda.is_available():
        return []
    return [index for index in range(torch.cuda.device_count()) if gpu_problem(index) is None]


def pick_device(device: str):
    """'auto': the first GPU when torch can run on it, else the CPU (with a warning when a GPU is there but
    unsupported; Kaggle's GPUs are all of one kind); 'cuda' (the current GPU) or 'cuda:N' without a GPU, or on
    one torch has no kernels for, is an error that says so; a name torch does not know is an error; anything
    else (cpu) as it is. Returns a torch.device."""
    import torch  # deferred: torch is heavy

    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        problem = gpu_problem(0)
        if problem is None:
            return torch.device("cuda")
        warnings.warn(f"{problem}; running on the CPU instead", RuntimeWarning, stacklevel=2)
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):  # torch's message lists twenty device types and names no parameter
        raise ValueError(f"device={device!r} is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N' (-p device "
                         "in the notebook, device= in a function)") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} but torch sees no GPU here: use device='auto' or 'cpu' (or turn "
                               "the accelerator on in the Kaggle notebook settings)")
        index = torch.cuda.current_device() if chosen.index is None else chosen.index  # 'cuda': the current GPU
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"device={device!r} but torch sees {torch.cuda.device_count()} GPU(s), numbered from "
                               "0: name one of them, or use device='auto'")
        problem = gpu_problem(index)
        if problem is not None:
            raise RuntimeError(problem)
    return chosen


def out_of_memory_error() -> type[Exception]:
    """The exception torch raises when a GPU runs out of memory: torch.OutOfMemoryError from torch 2.5,
    torch.cuda.OutOfMemoryError (the same class since) before."""
    import torch  # deferred: torch is heavy

    return getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
