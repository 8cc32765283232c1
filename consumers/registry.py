"""The batch stages' work by stage number."""

from __future__ import annotations

from consumers.deps import StageWork
from consumers.stage1_clustering import ClusteringStage
from consumers.stage2_ideas import IdeasStage
from consumers.stage3_tasks import TasksStage
from consumers.stage4_content import ContentStage
from consumers.stage5_image_prompts import ImagePromptsStage
from consumers.stage6_images import ImagesStage

STAGE_WORK: dict[int, StageWork] = {
    work.stage.number: work
    for work in (ClusteringStage(), IdeasStage(), TasksStage(), ContentStage(), ImagePromptsStage(), ImagesStage())
}
