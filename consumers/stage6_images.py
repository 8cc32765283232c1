"""Stage 6: image prompts -> generated images (GenerateImages). Seed query: images with status='pending'.

When the last image of a content is generated, the content moves to 'review' (the seed did
this inside the AI task; here it is part of the same batch transaction, under the content's
row lock, so two images finishing at once cannot both miss it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Select, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from consumers.deps import BatchContext, Deps, Written
from shared.ai.functions import GenerateImages
from shared.models import Content, Image


@dataclass(frozen=True)
class PendingImage:
    id: int
    site_id: int
    content_id: int
    prompt: str


@dataclass(frozen=True)
class StoredImage:
    url: str
    width: int
    height: int


def image_path(media_dir: Path, site_id: int, content_id: int, image_id: int) -> Path:
    return media_dir / str(site_id) / str(content_id) / f"{image_id}.png"


class ImagesStage:
    number = 6
    input_name = "image prompts"
    output_name = "images"

    def eligible_ids(self, site_id: int) -> Select[tuple[int]]:
        return select(Image.id).where(Image.site_id == site_id, Image.status == "pending").order_by(Image.id)

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]) -> list[PendingImage]:
        rows = (await session.execute(
            select(Image.id, Image.site_id, Image.content_id, Image.prompt)
            .where(Image.id.in_(item_ids), Image.site_id == site_id, Image.status == "pending")
            .order_by(Image.id))).all()
        return [PendingImage(id=r.id, site_id=r.site_id, content_id=r.content_id, prompt=r.prompt) for r in rows]

    async def generate(self, deps: Deps, inputs: list[PendingImage]) -> dict[int, StoredImage]:
        settings = deps.settings
        images = await GenerateImages(deps.provider).execute(
            {i.id: i.prompt for i in inputs}, settings.image_width, settings.image_height)
        stored: dict[int, StoredImage] = {}
        for pending in inputs:
            image = images[pending.id]
            path = image_path(settings.media_dir, pending.site_id, pending.content_id, pending.id)
            await asyncio.to_thread(_write_file, path, image.png)
            relative = path.relative_to(settings.media_dir).as_posix()
            stored[pending.id] = StoredImage(url=f"{settings.media_url}/{relative}", width=image.width,
                                             height=image.height)
        return stored

    async def write(self, session: AsyncSession, ctx: BatchContext, inputs: list[PendingImage],
                    outputs: dict[int, StoredImage]) -> Written:
        generated: list[int] = []
        for image_id, stored in outputs.items():
            done = await session.scalar(
                update(Image).where(Image.id == image_id, Image.status == "pending")
                .values(status="generated", image_url=stored.url, width=stored.width, height=stored.height)
                .returning(Image.content_id))
            if done is not None:
                generated.append(done)
        content_ids = sorted(set(generated))
        locked = (await session.scalars(select(Content.id).where(Content.id.in_(content_ids))
                                        .order_by(Content.id).with_for_update())).all()
        still_pending = exists().where(Image.content_id == Content.id, Image.status == "pending")
        if locked:
            await session.execute(
                update(Content).where(Content.id.in_(locked), Content.status == "draft", ~still_pending)
                .values(status="review"))
        return Written(items_out=len(generated), credits=GenerateImages.credits(len(generated)))


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
