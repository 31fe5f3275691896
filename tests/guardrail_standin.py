"""A small stand-in for the model-based guardrails, behind the same interface as `CosmosGuardrails`.

It blocks prompts that contain one of its words, and videos of one of its frame counts (the tests pick a
sample's frame count through `cosmos_ray_num_frames`); its "face blur" paints every frame mid-grey, so a written
video shows that it went through `blur_faces`. Module-level and picklable: Ray ships it to the pool actors and
rank workers like the real checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cosmos_ray.core.guardrails import Part, Verdict

GREY = 128


@dataclass
class StandInGuardrails:
    blocked_words: tuple[str, ...] = ("forbidden",)
    blocked_frame_counts: tuple[int, ...] = ()
    name: str = "stand-in"

    def load(self, part: Part, device: str | None = None) -> None:
        pass  # no models

    def check_prompt(self, prompt: str) -> Verdict:
        words = [word for word in self.blocked_words if word in prompt.lower()]
        return Verdict(False, f"stand-in: the prompt contains {words[0]!r}") if words else Verdict(True)

    def check_video(self, frames: np.ndarray) -> Verdict:
        if len(frames) in self.blocked_frame_counts:
            return Verdict(False, f"stand-in: a video of {len(frames)} frames")
        return Verdict(True)

    def blur_faces(self, frames: np.ndarray) -> np.ndarray:
        return np.full_like(frames, GREY)
