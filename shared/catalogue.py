"""The stage catalogue: every fact about the seven stages, stated once.

Names, what each stage reads and writes, its seed query, default batch size, credit rate and AI
function live here; the consumers, the estimate, the progress lines, the API (which serves the
catalogue to the dashboard at `GET /api/v1/automation/stages`) and the docs read them from here.
It imports nothing of the project, so every module (the models' column defaults included) can.
The seed queries themselves, which need the models, are in `shared.seed_queries`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    number: int
    name: str  # "keywords → clusters"
    input_name: str  # what its batches take, plural
    output_name: str  # what it writes, plural
    default_batch_size: int | None  # None: the stage has no batches (the review gate)
    credits: int  # credits per `credits_per` items in
    credits_per: int
    ai_function: str | None  # None: no AI call
    seed_query: str  # the seed's selection, for people

    def cost(self, items: int) -> int:
        """Credits for `items` items in, at the seed's rate (stage 1 rounds up per batch)."""
        return math.ceil(items * self.credits / self.credits_per) if items > 0 else 0

    def describe(self) -> dict[str, Any]:
        """The catalogue entry as the API serves it."""
        return {"number": self.number, "name": self.name, "input": self.input_name, "output": self.output_name,
                "default_batch_size": self.default_batch_size, "ai_function": self.ai_function,
                "credits": self.credits, "credits_per": self.credits_per, "seed_query": self.seed_query}


STAGES: tuple[Stage, ...] = (
    Stage(1, "keywords → clusters", "keywords", "clusters", 20, 1, 5, "AutoCluster",
          "keywords with status 'new', no cluster, not disabled"),
    Stage(2, "clusters → ideas", "clusters", "ideas", 1, 2, 1, "GenerateIdeas",
          "clusters with status 'new' and no ideas yet, or reopened"),
    Stage(3, "ideas → tasks", "ideas", "tasks", 20, 0, 1, None, "ideas with status 'new'"),
    Stage(4, "tasks → content", "tasks", "content", 1, 5, 1, "GenerateContent",
          "tasks with status 'queued' and no content"),
    Stage(5, "content → image prompts", "content", "image prompts", 1, 2, 1, "GenerateImagePrompts",
          "content with status 'draft' and no images"),
    Stage(6, "prompts → images", "image prompts", "images", 1, 2, 1, "GenerateImages",
          "images with status 'pending'"),
    Stage(7, "review gate", "content", "content in review", None, 0, 1, None, "content with status 'review'"),
)
BY_NUMBER = {stage.number: stage for stage in STAGES}
STAGE_NUMBERS = tuple(BY_NUMBER)
BATCH_STAGES = tuple(s.number for s in STAGES if s.default_batch_size is not None)
LAST_STAGE = STAGES[-1].number
DEFAULT_BATCH_SIZES = {s.number: s.default_batch_size for s in STAGES if s.default_batch_size is not None}


def stage_cost(stage: int, items: int) -> int:
    """Credits for `items` items of a stage at the seed's rates."""
    return BY_NUMBER[stage].cost(items)
