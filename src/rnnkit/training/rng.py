"""The random number generators' states (python, numpy, torch CPU and CUDA) as plain values and tensors,
so a resumed run draws the same numbers."""

from __future__ import annotations

import random
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InputError


def capture_rng() -> dict[str, Any]:
    """The states of python's ``random``, numpy's global generator and torch's (CPU, and CUDA if available).

    Everything is a tensor or a plain value, so the dict goes into ``train_state`` as it is.
    :func:`restore_rng` puts it back; the numbers drawn next are then the same, bit for bit.
    """
    version, internal, gauss_next = random.getstate()
    algorithm, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "state": torch.tensor(internal, dtype=torch.int64),  # 624 words < 2**32, and the position
            "gauss_next": gauss_next,
        },
        "numpy": {
            "algorithm": str(algorithm),
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()  # one uint8 tensor per device
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Set the generators to a state from :func:`capture_rng` (also after a save and load)."""
    try:
        py, npy = state["python"], state["numpy"]
        random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
        key = npy["key"].numpy().astype(np.uint32)
        np.random.set_state(
            (npy["algorithm"], key, int(npy["pos"]), int(npy["has_gauss"]), float(npy["cached_gaussian"]))
        )
        torch.set_rng_state(state["torch"].to("cpu", torch.uint8))
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise InputError(
            f"not a random number generator state from capture_rng: {type(e).__name__}: {e}"
        ) from e
    cuda = state.get("cuda")
    if cuda is None:
        return
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available != len(cuda):
        warnings.warn(
            f"the checkpoint has CUDA generator states for {len(cuda)} devices and this machine has "
            f"{available}: restoring {min(available, len(cuda))}, so CUDA random numbers will differ",
            RuntimeWarning,
            stacklevel=2,
        )
    for device, device_state in enumerate(cuda[:available]):
        torch.cuda.set_rng_state(device_state.to("cpu", torch.uint8), device)
