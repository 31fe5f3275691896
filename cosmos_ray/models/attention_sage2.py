"""SageAttention 2 (INT8 QK, FP8 PV; thu-ml/SageAttention 2.x), the kernel the official inference picks first on
Hopper when `COSMOS_ENABLE_SAGE_ATTN=1` (nvidia-cosmos/cosmos-predict2.5 at 805af3b8,
`cosmos_predict2/_src/predict2/networks/attention.py`: `sageattn(q, k, v, tensor_layout="NHD")`, whose sm_90
dispatch is `sageattn_qk_int8_pv_fp8_cuda_sm90` with fp32+fp32 PV accumulation).

It has no wheel on PyPI (the PyPI `sageattention` 1.0.6 is the older Triton kernel): users compile it from
source. We call it exactly as the official code does, so `--attention-precision sage2` gives the official
path's attention.
"""

from __future__ import annotations

import torch


def check_supported(q: torch.Tensor) -> None:
    """Raises RuntimeError saying why SageAttention 2 cannot run on `q`'s device."""
    try:
        from sageattention import core
    except ImportError as error:
        raise RuntimeError(
            "SageAttention 2 is not installed: compile it for this GPU (github.com/thu-ml/SageAttention, "
            "`pip install .` with nvcc), or use 'int8', which needs no compiler"
        ) from error
    if q.device.type != "cuda":
        raise RuntimeError(f"SageAttention 2 runs on CUDA GPUs only, not {q.device.type}")
    if not (getattr(core, "SM90_ENABLED", False) or getattr(core, "SM89_ENABLED", False)):
        raise RuntimeError(
            "the installed SageAttention has no 8-bit (sm_89 / sm_90) kernels: it is not SageAttention 2, or was "
            "compiled for another GPU"
        )


def sage2_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention without mask: q (B, Sq, H, D), k and v (B, Sk, H, D) -> (B, Sq, H, D)."""
    from sageattention import sageattn

    return sageattn(q, k, v, tensor_layout="NHD", is_causal=False)
