"""LoRA adapters of the DiT: reading them, checking them against the net, and merging a blend into its weights.

An adapter adds a low-rank term to some of the DiT's linear layers: W x -> (W + alpha/r * B A) x, with A
(`lora_A`, (r, in)) and B (`lora_B`, (out, r)). The official post-training (`cosmos_nemo_assets_lora.py`) trains
one with peft: rank 32, alpha 32, on `q_proj`, `k_proj`, `v_proj`, `output_proj` (self- and cross-attention)
and `mlp.layer1`, `mlp.layer2` of every block, and applies it unmerged at inference. Files come in two formats:

- official: the keys of the net with `lora_A.default.weight` / `lora_B.default.weight` after the layer's name
  (`net.blocks.0.self_attn.q_proj.lora_A.default.weight`), under `net.` / `net_ema.` or bare, in a `.pt` or
  `.safetensors` file; a LoRA-trained checkpoint holds them beside its base weights. No alpha is stored: the
  experiment's `lora_alpha` applies, the official default `OFFICIAL_ALPHA` (32);
- diffusers (`CosmosLoraLoaderMixin.save_lora_weights`, `pytorch_lora_weights.safetensors`): diffusers' layer
  names (`transformer.transformer_blocks.0.attn1.to_q.lora_A.weight`, `to_k`, `to_v`, `to_out.0`,
  `ff.net.0.proj`, `ff.net.2`), with peft's `LoraConfig` in the safetensors metadata (`lora_adapter_metadata`:
  `lora_alpha`, `alpha_pattern`); without it alpha equals the rank (scale 1), as diffusers loads such files.

Several adapters blend: every targeted layer becomes W + sum_i(s_i * alpha_i / r_i * B_i A_i), summed in float32
and rounded to the weight's dtype once (`AdapterMerger`), so a merged step costs what a base step costs. The
merger keeps the base weight of every layer it touched on the host, so going back to fewer or no adapters
restores those weights bit for bit. `unmerged` applies a blend the official way instead (an extra low-rank
product per layer and step), for comparisons.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cosmos_ray.core.adapters import LoraRef
from cosmos_ray.core.fetch_cache import FetchCache
from cosmos_ray.models.dit import DIFFUSERS_TOP_LEVEL, MiniTrainDiT, diffusers_to_official_key
from cosmos_ray.models.weights import CheckpointMismatchError, mismatch_error, read_state_dict, select_prefix

OFFICIAL_TARGETS = ("q_proj", "k_proj", "v_proj", "output_proj", "mlp.layer1", "mlp.layer2")
OFFICIAL_ALPHA = 32.0  # the official `lora_alpha` default (text2world_model_rectified_flow.py, commit 7e5ffc83)
DIFFUSERS_METADATA_KEY = "lora_adapter_metadata"  # diffusers' safetensors metadata entry of the LoraConfig

# "<layer>.lora_A[.<adapter name>].weight": peft's names (official: adapter name "default"; diffusers: none)
_LORA_KEY = re.compile(r"^(?P<layer>.+)\.lora_(?P<factor>[AB])(?:\.(?P<name>[^.]+))?\.weight$")


@dataclass(frozen=True)
class LoraLayer:
    """The low-rank term of one linear layer: alpha / r * up @ down."""

    down: torch.Tensor  # lora_A (r, in_features)
    up: torch.Tensor  # lora_B (out_features, r)
    alpha: float

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    def delta(self, scale: float, device: torch.device) -> torch.Tensor:
        """scale * alpha / r * B A, (out_features, in_features) in float32 on `device`."""
        up, down = self.up.to(device, torch.float32), self.down.to(device, torch.float32)
        return (up @ down).mul_(scale * self.alpha / self.rank)


@dataclass(frozen=True, eq=False)
class Adapter:
    """An adapter file's layers by the official name of the linear layer they add to."""

    source: str  # the file (path or URL), for messages
    layers: Mapping[str, LoraLayer]  # "blocks.0.self_attn.q_proj" -> its factors
    sha256: str = ""

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.layers.values() for t in (layer.down, layer.up))


def is_lora_key(key: str) -> bool:
    return _LORA_KEY.match(key) is not None


def split_lora(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A checkpoint's (base weights, LoRA factors). peft's wrapping (`base_model.model.`, `.base_layer.`) is
    removed from the base names, as the official checkpointer does when it saves."""
    base, lora = {}, {}
    for key, value in state.items():
        key = key.removeprefix("base_model.model.")
        if is_lora_key(key):
            lora[key] = value
        else:
            base[key.replace(".base_layer.", ".")] = value
    return base, lora


def adapter_from_state(
    state: Mapping[str, torch.Tensor], source: str, *, metadata: Mapping | None = None, sha256: str = ""
) -> Adapter:
    """The adapter of LoRA factors `state` (official or diffusers names); `metadata` is diffusers' LoraConfig.

    Raises CheckpointMismatchError (one line) for keys that are not LoRA factors, a layer with only one of its
    two factors, several adapters in one file, or factors whose ranks differ.
    """
    what = f"LoRA adapter {source}"
    factors: dict[str, dict[str, torch.Tensor]] = {}
    names, others = set(), []
    for key, value in state.items():
        match = _LORA_KEY.match(key.removeprefix("base_model.model.").removeprefix("transformer."))
        if match is None:
            others.append(key)
            continue
        layer = match["layer"]
        if layer.startswith(DIFFUSERS_TOP_LEVEL):
            layer = diffusers_to_official_key(layer + ".weight").removesuffix(".weight")
        names.add(match["name"])
        factors.setdefault(layer, {})[match["factor"]] = value
    if others:
        raise mismatch_error(
            what,
            "the LoRA file format",
            f"{len(others)} key(s) are not LoRA factors (lora_A / lora_B weights)",
            sorted(others),
            "an adapter file holds only LoRA factors; a checkpoint with its own base weights goes in "
            "--checkpoint-path (its LoRA is applied with it)",
        )
    if not factors:
        raise CheckpointMismatchError(f"{what} holds no LoRA factors (no lora_A / lora_B weights)")
    if len(names) > 1:
        raise CheckpointMismatchError(
            f"{what} holds several adapters ({', '.join(sorted(map(str, names)))}); save each to its own file"
        )
    lone = sorted(f"{layer}.lora_{'B' if 'A' in pair else 'A'}" for layer, pair in factors.items() if len(pair) < 2)
    if lone:
        raise mismatch_error(what, "the LoRA file format", "layers lack one of their two factors", lone, "re-export it")
    ranks = sorted(
        f"{layer}: lora_A {tuple(pair['A'].shape)}, lora_B {tuple(pair['B'].shape)}"
        for layer, pair in factors.items()
        if pair["A"].ndim != 2 or pair["B"].ndim != 2 or pair["A"].shape[0] != pair["B"].shape[1]
    )
    if ranks:
        raise mismatch_error(
            what, "the LoRA file format", "rank of lora_A (rows) differs from lora_B's (columns)", ranks, "re-export it"
        )
    alpha_of = _alphas(metadata)
    layers = {
        layer: LoraLayer(down=pair["A"], up=pair["B"], alpha=alpha_of(layer, pair["A"].shape[0]))
        for layer, pair in sorted(factors.items())
    }
    return Adapter(source, layers, sha256)


def _alphas(metadata: Mapping | None) -> Callable[[str, int], float]:
    """Alpha of an official layer name and rank: the official default for official files; for diffusers files
    their LoraConfig's `alpha_pattern` / `lora_alpha` (keys may carry a `transformer.` prefix), else the rank."""
    if metadata is None:
        return lambda layer, rank: OFFICIAL_ALPHA
    config = {key.removeprefix("transformer."): value for key, value in metadata.items()}
    if config.get("use_rslora") or config.get("use_dora"):
        raise CheckpointMismatchError("LoRA adapters with rsLoRA or DoRA scaling are not supported")
    patterns = {
        diffusers_to_official_key(pattern.lstrip("^") + ".weight").removesuffix(".weight"): float(alpha)
        for pattern, alpha in (config.get("alpha_pattern") or {}).items()
    }
    default = config.get("lora_alpha")

    def alpha(layer: str, rank: int) -> float:
        for pattern, value in patterns.items():
            if re.fullmatch(rf"(.*\.)?{pattern}", layer):
                return value
        return float(default) if default is not None else float(rank)

    return alpha


def read_adapter(path: str | Path, *, source: str | None = None, sha256: str = "") -> Adapter:
    """The adapter in local file `path` (`.pt` or `.safetensors`, official or diffusers format); `source` names
    it in messages (default: the path)."""
    path = Path(path)
    source = source or str(path)
    state = read_state_dict(path)
    metadata = None
    if path.suffix == ".safetensors" and any(k.startswith(("transformer.", *DIFFUSERS_TOP_LEVEL)) for k in state):
        metadata = _diffusers_metadata(path)
    state = select_prefix(state, ("net_ema.", "net."))
    return adapter_from_state(state, source, metadata=metadata, sha256=sha256)


def _diffusers_metadata(path: Path) -> dict:
    """diffusers' LoraConfig stored in a safetensors file's metadata (empty when absent: alpha = rank)."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get(DIFFUSERS_METADATA_KEY)
    return json.loads(raw) if raw else {}


def check_adapter(adapter: Adapter, net: nn.Module, model: str) -> None:
    """CheckpointMismatchError (one line) unless every layer of `adapter` is a linear layer of `net` (which may
    be on the `meta` device) with the factors' shapes; `model` names the net in the message."""
    what = f"LoRA adapter {adapter.source}"
    linears = {name: m for name, m in net.named_modules() if isinstance(m, nn.Linear)}
    absent = [layer for layer in adapter.layers if layer not in linears]
    if absent:
        raise mismatch_error(
            what,
            model,
            f"{len(absent)} LoRA target layer(s) do not exist in the net",
            absent,
            f"the official targets are {', '.join(OFFICIAL_TARGETS)} of blocks.0..{_num_blocks(net) - 1}; pass "
            "an adapter trained on this model (--model names the model it was trained from)",
        )
    wrong = [
        f"{layer}: lora_A {tuple(factors.down.shape)}, lora_B {tuple(factors.up.shape)} vs layer "
        f"{linears[layer].out_features}x{linears[layer].in_features}"
        for layer, factors in adapter.layers.items()
        if factors.down.shape[1] != linears[layer].in_features or factors.up.shape[0] != linears[layer].out_features
    ]
    if wrong:
        raise mismatch_error(
            what,
            model,
            f"{len(wrong)} layer(s) have factors of another width",
            wrong,
            "pass an adapter trained on this model size (--model names the model it was trained from)",
        )


def _num_blocks(net: nn.Module) -> int:
    blocks = getattr(net, "blocks", None)
    return len(blocks) if isinstance(blocks, nn.ModuleList) else 0


Blend = Sequence[tuple[Adapter, float]]  # adapters with their scales


def _by_layer(blend: Blend) -> dict[str, list[tuple[LoraLayer, float]]]:
    layers: dict[str, list[tuple[LoraLayer, float]]] = {}
    for adapter, scale in blend:
        for name, layer in adapter.layers.items():
            layers.setdefault(name, []).append((layer, scale))
    return layers


def merged_weight(base: torch.Tensor, terms: Sequence[tuple[LoraLayer, float]], device: torch.device) -> torch.Tensor:
    """base + sum(scale * alpha / r * B A) in float32 on `device` (round it to the weight's dtype once)."""
    weight = base.to(device, torch.float32, copy=True)
    for layer, scale in terms:
        weight += layer.delta(scale, device)
    return weight


def merge_permanently(net: nn.Module, blend: Blend, device: torch.device | None = None) -> None:
    """Merges `blend` into `net`'s weights for good (a checkpoint's own LoRA: its weights are base + LoRA),
    computing on `device` (default: each weight's own)."""
    modules = dict(net.named_modules())
    with torch.no_grad():
        for name, terms in _by_layer(blend).items():
            weight = modules[name].weight
            weight.copy_(merged_weight(weight, terms, device or weight.device))


class AdapterMerger:
    """A net's weights as its base plus a blend of adapters, merged in, with the way back.

    `merge(blend)` writes base + the blend into every layer the blend targets and puts the base weight back
    into the layers the previous blend touched and this one does not. The base weight of each layer is copied
    to the host (pinned on CUDA) the first time an adapter touches it; the weights are changed in place, so
    wrappers, compiled blocks and offloaded host copies keep pointing at them. The sums are computed on
    `device` (default: each weight's own; the GPU for a DiT that waits on the CPU, offloaded).
    """

    def __init__(self, net: nn.Module, device: torch.device | None = None):
        self.device = device
        self.linears = {name: m for name, m in net.named_modules() if isinstance(m, nn.Linear)}
        self.base: dict[str, torch.Tensor] = {}  # host copies of the base weights of the touched layers
        self.touched: set[str] = set()  # layers whose weight is not their base weight now

    def merge(self, blend: Blend) -> None:
        layers = _by_layer(blend)
        with torch.no_grad():
            for name in sorted(self.touched - set(layers)):
                self.linears[name].weight.copy_(self.base[name])
            for name, terms in layers.items():
                weight = self.linears[name].weight
                if name not in self.base:
                    self.base[name] = _host_copy(weight)
                weight.copy_(merged_weight(self.base[name], terms, self.device or weight.device))
        self.touched = set(layers)


def _host_copy(tensor: torch.Tensor) -> torch.Tensor:
    pin = tensor.device.type == "cuda"
    return torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=pin).copy_(tensor)


@contextmanager
def unmerged(net: nn.Module, blend: Blend) -> Iterator[None]:
    """Inside the block, each targeted layer adds sum(scale * alpha / r * B (A x)) to its output, computed in the
    layer's dtype from the unchanged weights: the official (peft) way, for comparisons with merging."""
    modules = dict(net.named_modules())
    handles = []
    for name, terms in _by_layer(blend).items():

        def hook(
            module: nn.Module, args: tuple, output: torch.Tensor, terms: Sequence[tuple[LoraLayer, float]] = terms
        ) -> torch.Tensor:
            x = args[0]
            for layer, scale in terms:
                down, up = layer.down.to(x.device, x.dtype), layer.up.to(x.device, x.dtype)
                output = output + (x @ down.T @ up.T) * (scale * layer.alpha / layer.rank)
            return output

        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class AdapterCache:
    """Recently used adapters in host memory, by key (e.g. file, size and time); the least recently used ones
    are dropped beyond `max_bytes` (the newest is always kept)."""

    def __init__(self, max_bytes: int = 4 * 2**30):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[Hashable, Adapter] = OrderedDict()

    def get(self, key: Hashable, load: Callable[[], Adapter]) -> Adapter:
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        adapter = self.entries[key] = load()
        while len(self.entries) > 1 and sum(a.nbytes for a in self.entries.values()) > self.max_bytes:
            self.entries.popitem(last=False)
        return adapter


class DiTAdapters:
    """The adapters merged into one DiT now, named by `LoraRef`s: each file is fetched (`FetchCache`), read once
    into the host `AdapterCache`, checked against the net, and the blend merged by an `AdapterMerger`.

    `set(refs)` reads and checks every adapter before it changes a weight, so a bad one leaves the net as it
    was; the same set again is a no-op, and `set(())` gives the base weights back bit for bit. `model` names the
    net in messages (e.g. "model 2B/post-trained (DiT 2048 wide, 28 blocks)"); `device` computes the merges.
    """

    def __init__(
        self,
        net: MiniTrainDiT,
        model: str,
        fetch: FetchCache,
        cache: AdapterCache | None = None,
        device: torch.device | None = None,
    ):
        self.net = net
        self.model = model
        self.fetch = fetch
        self.cache = cache if cache is not None else AdapterCache()
        self.merger = AdapterMerger(net, device)
        self.current: tuple[LoraRef, ...] = ()
        self.records: list[dict] = []  # {"path", "scale", "sha256"} of the current set, for the metadata

    def set(self, refs: Sequence[LoraRef]) -> None:
        refs = tuple(refs)
        if refs == self.current:
            return
        adapters = [self.load(ref) for ref in refs]
        self.merger.merge([(adapter, ref.scale) for adapter, ref in zip(adapters, refs)])
        self.current = refs
        self.records = [{**ref.to_dict(), "sha256": adapter.sha256} for adapter, ref in zip(adapters, refs)]

    def load(self, ref: LoraRef) -> Adapter:
        """The adapter `ref` names, checked against the net (from the host cache when it was used lately)."""
        fetched = self.fetch.file(ref.path)

        def read() -> Adapter:
            adapter = read_adapter(fetched.path, source=ref.path, sha256=fetched.sha256)
            check_adapter(adapter, self.net, self.model)
            return adapter

        return self.cache.get((fetched.path, fetched.sha256), read)
