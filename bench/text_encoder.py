"""Text encoder throughput: ours (`TextEncoder.encode`) vs diffusers' Cosmos2.5 prompt path, same weights.

The model is a randomly initialized Qwen2.5-VL (Reason1-7B shapes with `--config reason1`); our encoder
runs its language model, diffusers' `_get_prompt_embeds` runs the whole Qwen2.5-VL model as the pipeline
does (it also computes the LM head's logits). Prompts are tokenized with the tiny byte-level tokenizer:
every sequence is padded to 512 tokens, so the model's work is the same as with the real tokenizer.

    python -m bench.text_encoder --device cuda --out text.jsonl
    python -m bench.text_encoder --device cpu --smoke

Prints one JSON line per measurement: median ms per call, prompts/s, TFLOP/s of the language model
(linear layers + causal attention, same count for both), peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace
from typing import Any

import torch

from bench.common import add_common_args, add_dtype_arg, chosen_dtype_name, time_ms_and_peak_gib
from cosmos_ray.models.text import TextEncoder, TextEncoderConfig, build_tiny_tokenizer
from cosmos_ray.models.text_cache import EmbeddingCache


def build_models(config: TextEncoderConfig, device: torch.device, dtype: torch.dtype):
    """A random Qwen2.5-VL, and our encoder sharing its language model."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    vision: dict[str, Any] = {"out_hidden_size": config.hidden_size}
    if config.hidden_size < 1024:  # a tiny vision tower for the tiny model
        vision.update(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, fullatt_block_indexes=[0])
    hf_config = Qwen2_5_VLConfig(text_config=config.to_transformers().to_dict(), vision_config=vision)
    torch.manual_seed(0)
    with torch.device(device):
        full = Qwen2_5_VLForConditionalGeneration._from_config(hf_config, dtype=dtype).eval()
    tokenizer = build_tiny_tokenizer()
    ours = TextEncoder(config, full.model.language_model, tokenizer, model_id="bench")
    return full, tokenizer, ours


def language_model_flops(config: TextEncoderConfig, batch: int) -> float:
    length = config.max_length
    head_dim = config.hidden_size // config.num_heads
    per_layer = (
        2 * config.hidden_size * config.hidden_size  # q, o
        + 2 * config.hidden_size * config.num_kv_heads * head_dim  # k, v
        + 3 * config.hidden_size * config.intermediate_size
    )  # gate, up, down
    linear = 2 * length * per_layer * config.num_layers
    attention = 2 * length * length * config.hidden_size * config.num_layers  # QK^T + PV, causal half
    return batch * (linear + attention)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, warmup=2, iters=10)
    add_dtype_arg(parser)
    parser.add_argument("--config", choices=["reason1", "tiny"], default="reason1")
    parser.add_argument("--batch-sizes", default="1,8")
    args = parser.parse_args(argv)
    if args.smoke:
        args.config, args.warmup, args.iters = "tiny", 1, 2

    device = torch.device(args.device)
    dtype = getattr(torch, chosen_dtype_name(args.dtype, device))
    config = TextEncoderConfig.preset(args.config)
    full, tokenizer, ours = build_models(config, device, dtype)
    from diffusers import Cosmos2_5_PredictBasePipeline

    pipe = SimpleNamespace(tokenizer=tokenizer, text_encoder=full)

    def diffusers_encode(prompts):
        with torch.no_grad():
            return Cosmos2_5_PredictBasePipeline._get_prompt_embeds(
                pipe, prompt=prompts, max_sequence_length=config.max_length, device=device, dtype=dtype
            )

    def ours_uncached(prompts):
        ours.cache = EmbeddingCache()
        return ours.encode(prompts)

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    common = {
        "config": args.config,
        "dtype": str(dtype).removeprefix("torch."),
        "device": device_name,
        "torch": torch.__version__,
    }
    records = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        prompts = [f"Prompt {i}: a robot arm stacks colored blocks on a wooden table." for i in range(batch)]
        ours_out, theirs = ours_uncached(prompts).float(), diffusers_encode(prompts).float()
        agreement = {
            "max_abs_diff_vs_diffusers": (ours_out - theirs).abs().max().item(),
            "rel_err_vs_diffusers": ((ours_out - theirs).norm() / theirs.norm()).item(),
        }
        ours.encode(prompts)  # fill the cache for the cached measurement
        for name, fn in [
            ("ours.encode", ours_uncached),
            ("diffusers._get_prompt_embeds", diffusers_encode),
            ("ours.encode_cached", ours.encode),
        ]:
            ms, peak = time_ms_and_peak_gib(lambda: fn(prompts), device, args.warmup, args.iters)
            record = {
                "name": name,
                "shape": [batch, config.max_length, config.embed_dim],
                "ms": round(ms, 3),
                "prompts_per_s": round(batch / ms * 1e3, 2),
                "tflops": None if name.endswith("cached") else round(language_model_flops(config, batch) / ms / 1e9, 4),
                "peak_mem_gib": None if peak is None else round(peak, 3),
                **agreement,
                **common,
            }
            print(json.dumps(record), flush=True)
            records.append(record)
    if args.out:
        with open(args.out, "a") as f:
            f.writelines(json.dumps(record) + "\n" for record in records)


if __name__ == "__main__":
    main()
