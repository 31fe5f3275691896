"""Fixture `end_to_end`: whole bf16 runs of the official inference path for each inference type: the official
media reading, the official sampler and conditioner (`Video2WorldModelRectifiedFlow.generate_samples_from_batch`,
the 2B post-trained settings), the official tiny 2B net (the `dit` fixture's net and weights, fp32 plan on)
and the official Wan2.1 VAE code holding the tiny preset's VAE weights, all in bf16 as the official inference
runs them (`precision="bfloat16"`: the batch's floating tensors, the net and the VAE in bf16, the sampler's
state in float32); 3 steps with guidance 7 and the negative prompt.

Besides the `dit` fixture's four stand-ins, one more GPU piece is replaced: `torch.cuda.Stream`, which the
official net's `disable_context_parallel` (called by the sampler) creates for every block's context-parallel
communication and never uses without a process group, is `None` while this piece runs.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import torch

from tools.golden.dit import official_net, random_dit_weights
from tools.golden.harness import ROOT, Official, write
from tools.golden.sampling import data_batch, official_model
from tools.golden.tiny_runs import official_case, official_input, official_vae, tiny_embeddings, tiny_models

STATE_T, RESOLUTION = 3, (16, 32)
CASES = (  # name, latent conditional frames, input, seed
    ("text2world", 0, None, 0),
    ("image2world", 1, "square.png", 1),
    ("video2world", 2, "square.mp4", 2),
)


def end_to_end_embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt and negative-prompt embeddings (1, 16, 96) in bf16, as the official batch holds them."""
    prompt, negative = tiny_embeddings()
    return prompt.bfloat16(), negative.bfloat16()


def end_to_end(official: Official, out: Path) -> None:
    dtype = torch.bfloat16
    net, _ = official_net(official, "2B")
    state = net.state_dict()
    net.load_state_dict({**state, **random_dit_weights({k: tuple(v.shape) for k, v in state.items()})})
    net.to(dtype)
    _, tokenizer = official_vae(official, tiny_models()[1].state_dict(), dtype)
    prompt, negative = end_to_end_embeddings()
    inference = official.module("predict2.inference.video2world")
    num_frames = 1 + 4 * (STATE_T - 1)
    cases = {}
    for name, num_conditional, source, seed in CASES:
        path = ROOT / "examples" / "media" / source if source else None
        video = official_input(inference, path, RESOLUTION, num_frames, num_conditional)
        model = official_model(official, "post-trained", STATE_T, net, tokenizer)
        model.precision = dtype
        model.tensor_kwargs = {"device": "cpu", "dtype": dtype}
        batch = data_batch(video, num_conditional, prompt, negative)
        batch = {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in batch.items()}
        with mock.patch.object(torch.cuda, "Stream", lambda *args, **kwargs: None):  # see the module's docstring
            cases[name] = official_case(model, batch, num_conditional, path, seed)  # the VAE decodes in bf16
    content = {
        "model": "the dit fixture's 2B net (tools/golden/dit.py); cosmos-ray's tiny VAE weights in the official VAE",
        "dtype": "bfloat16",
        "state_t": STATE_T,
        "resolution": list(RESOLUTION),
        "embeddings": "end_to_end_embeddings() in tools/golden/end_to_end.py",
        "stand_ins": {"torch.cuda.Stream": "None (the unused context-parallel stream of disable_context_parallel)"},
        "cases": cases,
    }
    write(out, "end_to_end", official, content)
