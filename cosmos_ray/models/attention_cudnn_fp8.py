"""FP8 attention: cuDNN's fused FP8 scaled dot-product attention, through NVIDIA's Python frontend
(`nvidia-cudnn-frontend`, the optional `fp8-attention` extra).

`cudnn_fp8_attention(q, k, v)` takes the engine's (B, S, H, D) bf16 tensors, quantizes each to float8_e4m3fn with
one scale per tensor, runs cuDNN's FP8 flash attention (softmax(q k^T / sqrt(D)) v, no mask) and returns (B, Sq, H, D)
in bf16.

- Scales are powers of two, the largest that keep max|t * scale| <= 448 (the largest finite e4m3 value): scaling and
  descaling are then exact and the cast to fp8 is the only rounding. They stay on the GPU, as the graph's descale
  inputs, so a call never waits for the host.
- Q and K are first rotated by one fixed random orthogonal D x D matrix R ("incoherent processing", as
  FlashAttention-3 does for FP8): (q R) . (k R) = q . k, but a few outlier channels, whose products would dominate each
  score and its fp8 error, are spread over all D channels.
- K is also centered: subtracting its mean over the tokens (per batch and head) moves every score of a query row by
  the same amount, which the softmax ignores, while the fp8 error of K (relative to |k|) shrinks wherever the keys
  share a large common component.
- The unnormalized probabilities exp(s - rowmax) lie in [0, 1]; cuDNN quantizes them with scale 448.
- On Hopper cuDNN writes O in fp8 only (an O in bf16 from fp8 inputs needs Blackwell and cuDNN 9.13). O is a convex
  combination of V's rows, so |O| <= max|V|: O takes V's scale halved, the half a headroom for the rounding of the
  fp8 probabilities, and is dequantized exactly (a power of two) to bf16. Where cuDNN can, O comes out in bf16
  directly.

One cuDNN graph is built per (device, shapes) and kept per thread, with the thread's cuDNN handle for that
device (cuDNN handles must not be shared across threads). Q, K, V and O are (B, S, H, D)-contiguous tensors that the
graph describes by strides as cuDNN's (B, H, S, D), so no layout copy is made beyond the quantization itself. Each
call runs on torch's current stream with a workspace from torch's allocator. The kernel is a torch custom op, so
torch.compile keeps it as one opaque call.

Error: emulating the kernel's roundings on the CPU gives a relative error against fp32 attention of about 0.06 on
random normal inputs and 0.05 on DiT-like ones (unit-RMS q/k heads with 4x outlier channels, keys with a common
component), where quantizing q and k as they are gives 0.10 to 0.12: fp8's 3 mantissa bits cost the most in the scores.
tests/test_attention_cudnn_fp8.py measures the real kernel.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

FRONTEND = "nvidia-cudnn-frontend==1.32.0"
INSTALL_HINT = "pip install 'cosmos-ray[fp8-attention]'"
FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # the largest finite float8_e4m3fn
PROBABILITY_SCALE = FP8_MAX  # exp(s - rowmax) <= 1 maps onto the whole e4m3 range
MIN_CUDNN = 90100  # cuDNN 9.1.0: the first with an FP8 SDPA forward
BROKEN_CUDNN = {91000: "9.10.0 (the frontend refuses FP8 SDPA on it)"}
HALF_OUTPUT_CUDNN = 91300  # cuDNN 9.13.0 on Blackwell: O in bf16/fp16 from fp8 inputs
SCALAR_INPUTS = ("descale_q", "descale_k", "descale_v", "descale_s", "scale_s", "scale_o")


# ----------------------------------------------------------------------------------------------------
# Support checks


def load_frontend() -> ModuleType:
    """Import NVIDIA's cuDNN frontend (`cudnn`) and check the cuDNN library it loaded can run FP8 attention."""
    try:
        import cudnn
    except ImportError as error:
        raise RuntimeError(
            f"FP8 attention needs NVIDIA's cuDNN frontend ({FRONTEND}), which did not import ({error}); "
            f"install it with `{INSTALL_HINT}`, or use the bf16 attention"
        ) from error
    version = cudnn.backend_version()
    if version < MIN_CUDNN or version in BROKEN_CUDNN:
        why = BROKEN_CUDNN.get(version, f"older than {cudnn_version_string(MIN_CUDNN)}")
        raise RuntimeError(
            f"FP8 attention needs cuDNN {cudnn_version_string(MIN_CUDNN)} or newer, not "
            f"{cudnn_version_string(version)}: {why}; upgrade the cuDNN that torch uses (nvidia-cudnn-cu13), "
            "or use the bf16 attention"
        )
    return cudnn


def check_device(device: torch.device) -> None:
    """Raise RuntimeError unless `device` is a CUDA GPU that cuDNN's FP8 attention runs on (Hopper or newer)."""
    if device.type != "cuda":
        raise RuntimeError(
            f"FP8 attention (cuDNN) needs a CUDA GPU, but the tensors are on {device}; use the bf16 attention"
        )
    major, minor = torch.cuda.get_device_capability(device)
    if major < 9:
        raise RuntimeError(
            f"FP8 attention (cuDNN) needs a GPU of compute capability 9.0 (Hopper) or newer; "
            f"{torch.cuda.get_device_name(device)} is {major}.{minor}: use the bf16 attention on it"
        )


def check_supported(q: torch.Tensor) -> None:
    """Raise RuntimeError saying why cuDNN FP8 attention cannot run where `q` lives (no CUDA, a GPU older than
    Hopper, the frontend not installed, cuDNN too old), and what to do instead."""
    check_device(q.device)
    load_frontend()


def cudnn_version_string(version: int) -> str:
    """cuDNN 9's version number (major * 10000 + minor * 100 + patch) as text: 91300 -> '9.13.0'."""
    return f"{version // 10000}.{version % 10000 // 100}.{version % 100}"


def environment_summary(device: torch.device | None = None) -> str:
    """One line naming what FP8 attention runs on: frontend and cuDNN versions, torch, the GPU."""
    parts = [f"torch {torch.__version__}"]
    try:
        cudnn = load_frontend()
        version = cudnn_version_string(cudnn.backend_version())
        parts += [f"nvidia-cudnn-frontend {cudnn.__version__}", f"cuDNN {version} (the frontend's)"]
    except RuntimeError as error:
        parts.append(str(error))
    parts.append(f"torch's cuDNN {torch.backends.cudnn.version()}")
    if torch.cuda.is_available():
        device = device or torch.device("cuda", torch.cuda.current_device())
        major, minor = torch.cuda.get_device_capability(device)
        parts.append(f"{torch.cuda.get_device_name(device)} (sm_{major}{minor})")
    return ", ".join(parts)


# ----------------------------------------------------------------------------------------------------
# Quantization (pure torch, on the tensors' device)


def power_of_two_scale(amax: torch.Tensor, limit: float = FP8_MAX) -> torch.Tensor:
    """The largest power of two s with amax * s <= limit (float32, elementwise). A zero amax gets a large finite
    scale, so an all-zero tensor quantizes to zeros."""
    _, exponent = torch.frexp(limit / amax.float().clamp_min(1e-30))  # limit / amax = m * 2**e, 0.5 <= m < 1
    return torch.exp2((exponent - 1).float())


def quantize_fp8(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """t -> (t * scale in float8_e4m3fn, contiguous; 1 / scale as a float32 (1, 1, 1, 1) tensor), with one
    power-of-two scale for the whole tensor (see `power_of_two_scale`). No host synchronization."""
    amax = torch.linalg.vector_norm(t, float("inf"), dtype=torch.float32)  # max |t|, one pass
    scale = power_of_two_scale(amax)
    # t * scale is exact in t's dtype (a power of two, |t * scale| <= 448), so the cast is the one rounding
    quantized = (t * scale).to(FP8, memory_format=torch.contiguous_format)
    return quantized, scale.reciprocal().reshape(1, 1, 1, 1)


def orthogonal_matrix(dim: int, seed: int = 0) -> torch.Tensor:
    """A random orthogonal dim x dim matrix (float32, on the CPU), the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return (q * r.diagonal().sign()).float()  # the signs make it Haar-distributed; any orthogonal matrix would do


def center_keys(k: torch.Tensor) -> torch.Tensor:
    """k (B, Sk, H, D) minus its mean over the Sk tokens: each query's scores all move by q . mean, which the
    softmax cancels."""
    return k - k.mean(dim=1, keepdim=True)


# ----------------------------------------------------------------------------------------------------
# The cuDNN graph


@dataclass
class _Graph:
    """A built cuDNN FP8 SDPA graph, its tensor handles by name, and the device buffers it reuses."""

    graph: Any
    ports: dict[str, Any]  # q, k, v, o, amax_s, amax_o and SCALAR_INPUTS -> the graph's tensors
    workspace_bytes: int
    fp8_output: bool
    rotation: torch.Tensor  # (D, D) orthogonal, bf16, applied to q and k
    buffers: dict[str, torch.Tensor]  # scale_s, descale_s (constants), amax_s, amax_o (written, never read)


class _ThreadState(threading.local):
    """This thread's cuDNN handle per device and its graphs."""

    def __init__(self) -> None:
        self.handles: dict[int, Any] = {}
        self.graphs: dict[tuple[Any, ...], _Graph] = {}


_STATE = _ThreadState()


def _handle(cudnn: ModuleType, device: torch.device) -> Any:
    """This thread's cuDNN handle on `device` (created with `device` current, as cuDNN binds it there)."""
    assert device.index is not None
    handle = _STATE.handles.get(device.index)
    if handle is None:
        handle = _STATE.handles[device.index] = cudnn.create_handle()
    return handle


def _fp8_output(cudnn: ModuleType, device: torch.device) -> bool:
    """Whether cuDNN writes O in fp8 here: always before Blackwell or cuDNN 9.13."""
    return torch.cuda.get_device_capability(device)[0] < 10 or cudnn.backend_version() < HALF_OUTPUT_CUDNN


def _build_graph(cudnn: ModuleType, handle: Any, shape_q: torch.Size, seq_k: int, device: torch.device) -> _Graph:
    """Build cuDNN's FP8 SDPA for q (B, Sq, H, D) and k, v (B, Sk, H, D), all (B, S, H, D)-contiguous."""
    batch, seq_q, heads, dim = shape_q
    fp8, fp32 = cudnn.data_type.FP8_E4M3, cudnn.data_type.FLOAT
    graph = cudnn.pygraph(io_data_type=fp8, intermediate_data_type=fp32, compute_data_type=fp32, handle=handle)

    def bshd(name: str, seq: int) -> Any:  # a (B, S, H, D)-contiguous tensor as cuDNN's (B, H, S, D)
        return graph.tensor(
            name=name, dim=[batch, heads, seq, dim], stride=[seq * heads * dim, dim, heads * dim, 1], data_type=fp8
        )

    ports = {"q": bshd("q", seq_q), "k": bshd("k", seq_k), "v": bshd("v", seq_k)}
    for name in SCALAR_INPUTS:
        ports[name] = graph.tensor(name=name, dim=[1, 1, 1, 1], stride=[1, 1, 1, 1], data_type=fp32)
    o, _, amax_s, amax_o = graph.sdpa_fp8(
        **ports, generate_stats=False, attn_scale=1.0 / math.sqrt(dim), name="sdpa_fp8"
    )  # Stats is None without generate_stats
    fp8_output = _fp8_output(cudnn, device)
    o.set_output(True).set_dim([batch, heads, seq_q, dim]).set_stride([seq_q * heads * dim, dim, heads * dim, 1])
    o.set_data_type(fp8 if fp8_output else cudnn.data_type.BFLOAT16)
    # The amax outputs are declared as outputs, as the frontend's own per-tensor FP8 tests do; nothing reads them.
    for amax in (amax_s, amax_o):
        amax.set_output(True).set_dim([1, 1, 1, 1]).set_stride([1, 1, 1, 1]).set_data_type(fp32)
    ports.update(o=o, amax_s=amax_s, amax_o=amax_o)
    try:
        graph.validate()
        graph.build_operation_graph()
        graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        graph.check_support()
        graph.build_plans()
    except Exception as error:
        raise RuntimeError(
            f"cuDNN could not build FP8 attention for q {tuple(shape_q)}, k/v ({batch}, {seq_k}, {heads}, {dim}) "
            f"({environment_summary(device)}): {error}"
        ) from error

    def scalar(value: float) -> torch.Tensor:
        return torch.full((1, 1, 1, 1), value, dtype=torch.float32, device=device)

    buffers = {
        "scale_s": scalar(PROBABILITY_SCALE),
        "descale_s": scalar(1.0 / PROBABILITY_SCALE),
        "amax_s": scalar(0.0),
        "amax_o": scalar(0.0),
    }
    rotation = orthogonal_matrix(dim).to(device=device, dtype=torch.bfloat16)
    return _Graph(graph, ports, graph.get_workspace_size(), fp8_output, rotation, buffers)


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or k.shape != v.shape:
        raise ValueError(
            f"FP8 attention takes q (B, Sq, H, D) and k, v (B, Sk, H, D); got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if (q.shape[0], q.shape[2], q.shape[3]) != (k.shape[0], k.shape[2], k.shape[3]):
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} differ in batch, heads or head dim")
    if q.shape[-1] % 16:
        raise ValueError(f"FP8 attention (cuDNN) needs a head dim that is a multiple of 16, not {q.shape[-1]}")
    if (q.dtype, k.dtype, v.dtype) != (torch.bfloat16,) * 3:
        raise ValueError(f"FP8 attention takes bf16 q, k and v; got {q.dtype}, {k.dtype}, {v.dtype}")


@torch.library.custom_op("cosmos_ray::cudnn_fp8_attention", mutates_args=())
def _fp8_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    device = q.device
    batch, seq_q, heads, dim = q.shape
    key = (device.index, tuple(q.shape), k.shape[1])
    entry = _STATE.graphs.get(key)
    if entry is None:
        check_device(device)
    cudnn = load_frontend()
    with torch.cuda.device(device):
        handle = _handle(cudnn, device)
        cudnn.set_stream(handle, torch.cuda.current_stream(device).cuda_stream)
        if entry is None:
            entry = _STATE.graphs[key] = _build_graph(cudnn, handle, q.shape, k.shape[1], device)

        q8, descale_q = quantize_fp8(q @ entry.rotation)
        k8, descale_k = quantize_fp8(center_keys(k @ entry.rotation))
        v8, descale_v = quantize_fp8(v)
        # |O| <= max|V| <= 448 * descale_v; half V's scale leaves room for the rounding of the fp8 probabilities
        scale_o = (0.5 / descale_v) if entry.fp8_output else torch.ones_like(descale_v)
        out = torch.empty((batch, seq_q, heads, dim), dtype=FP8 if entry.fp8_output else torch.bfloat16, device=device)
        buffers = entry.buffers
        data = {
            "q": q8.transpose(1, 2),  # (B, H, S, D) views of the (B, S, H, D) buffers, as the graph declares them
            "k": k8.transpose(1, 2),
            "v": v8.transpose(1, 2),
            "o": out.transpose(1, 2),
            "descale_q": descale_q,
            "descale_k": descale_k,
            "descale_v": descale_v,
            "scale_o": scale_o,
            **buffers,
        }
        workspace = torch.empty(entry.workspace_bytes, dtype=torch.uint8, device=device)
        entry.graph.execute({entry.ports[name]: tensor for name, tensor in data.items()}, workspace, handle=handle)
    if not entry.fp8_output:
        return out
    return out.to(torch.bfloat16).mul_(scale_o.reciprocal().reshape(()))  # exact: a power of two


@_fp8_attention.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return q.new_empty(q.shape)


def cudnn_fp8_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention in FP8 on cuDNN, without mask, scale 1/sqrt(D): q (B, Sq, H, D), k and v (B, Sk, H, D), bf16
    CUDA tensors (any strides) -> (B, Sq, H, D) bf16, contiguous. See the module docstring for the scaling."""
    _check_inputs(q, k, v)
    return _fp8_attention(q, k, v)
