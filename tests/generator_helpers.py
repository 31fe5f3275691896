"""What the tests of the Generator and the local CLI share: the example media and a short spec of each
inference type for the tiny preset."""

from pathlib import Path

from cosmos_ray.core.spec import GenerationSpec

MEDIA = Path(__file__).resolve().parent.parent / "examples" / "media"  # 64x96: square.png, square.mp4 (17 frames)
INPUTS = {"text2world": None, "image2world": str(MEDIA / "square.png"), "video2world": str(MEDIA / "square.mp4")}
KINDS = tuple(INPUTS)


def make_spec(kind: str, **fields) -> GenerationSpec:
    defaults = dict(
        inference_type=kind,
        name=f"{kind}-test",
        prompt=f"a {kind} prompt",
        input_path=INPUTS[kind],
        cosmos_ray_num_frames=9,
        num_steps=3,
    )
    return GenerationSpec(**{**defaults, **fields})
