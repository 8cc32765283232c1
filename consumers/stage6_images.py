"""Stage 6: image prompts -> generated images (GenerateImages). Seed query: images with status='pending'.

When the last image of a content is generated, the content moves to 'review' (the seed did
this inside the AI task; here it is part of the same batch transaction, under the content's
row lock, so two images finishing at once cannot both miss it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ai.functions import GenerateImages
from consumers.deps import BatchContext, Deps, LoadInClaim, Written
from shared.catalogue import BY_NUMBER
from shared.media import image_path


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


def pending_images(ids: str, site_id: str) -> str:
    """The seed's query: a batch's images still pending (`ids` and `site_id` are SQL expressions)."""
    return f"""SELECT id, site_id, content_id, prompt FROM images
                WHERE id = ANY({ids}) AND site_id = {site_id} AND status = 'pending'"""


def decode_pending(rows: list[dict[str, Any]]) -> list[PendingImage]:
    return [PendingImage(**row) for row in rows]


class ImagesStage:
    stage = BY_NUMBER[6]
    sequential_above: int | None = None
    # stage 6 runs a batch per image, most of a run's batches: the claim loads the image
    load_in_claim: LoadInClaim | None = LoadInClaim(
        sql=f"""(SELECT coalesce(jsonb_agg(to_jsonb(p) ORDER BY p.id), '[]')
                   FROM ({pending_images("claimed.item_ids", "claimed.site_id")}) AS p)""",
        decode=decode_pending)

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]) -> list[PendingImage]:
        rows = (await session.execute(LOAD_PENDING, {"ids": item_ids, "site_id": site_id})).all()
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
        written, = await self.write_group(session, [(ctx, inputs, outputs)])
        return written

    async def write_group(self, session: AsyncSession,
                          batches: Sequence[tuple[BatchContext, list[PendingImage], dict[int, StoredImage]]]
                          ) -> list[Written]:
        """The images of every batch of a group in two statements: a batch's images are one, and
        two statements per batch were most of what a stage 6 batch cost."""
        stored = {image_id: image for _, _, outputs in batches for image_id, image in outputs.items()}
        ids = list(stored)
        locked = (await session.execute(STORE_AND_LOCK_CONTENTS, {
            "ids": ids, "urls": [stored[i].url for i in ids], "widths": [stored[i].width for i in ids],
            "heights": [stored[i].height for i in ids]})).all()
        generated = {image_id for row in locked for image_id in row.image_ids}
        if locked:
            await session.execute(TO_REVIEW_WHEN_COMPLETE, {"ids": [row.id for row in locked]})
        counts = [len(generated.intersection(outputs)) for _, _, outputs in batches]
        return [Written(items_out=count, credits=GenerateImages.credits(count)) for count in counts]


# The batch's hot statements, prepared once: stage 6 runs a batch per image.
LOAD_PENDING = text(pending_images("CAST(:ids AS integer[])", ":site_id") + " ORDER BY id")
# Stores the images still pending, then locks their contents (in id order, as every writer
# does) so that two batches finishing images of one content cannot both miss that it is complete.
STORE_AND_LOCK_CONTENTS = text("""
    WITH generated AS (
        UPDATE images AS i SET status = 'generated', image_url = g.url, width = g.width, height = g.height
          FROM unnest(CAST(:ids AS integer[]), CAST(:urls AS text[]), CAST(:widths AS integer[]),
                      CAST(:heights AS integer[])) AS g(id, url, width, height)
         WHERE i.id = g.id AND i.status = 'pending'
     RETURNING i.id, i.content_id
    ), images_per_content AS (
        SELECT content_id, array_agg(id) AS image_ids FROM generated GROUP BY content_id
    )
    SELECT c.id, n.image_ids FROM content AS c JOIN images_per_content AS n ON n.content_id = c.id
     ORDER BY c.id FOR UPDATE OF c
""")
# A separate statement, so it sees images that other batches committed while we waited for the lock.
TO_REVIEW_WHEN_COMPLETE = text("""
    UPDATE content AS c SET status = 'review', updated_at = now()
     WHERE c.id = ANY(CAST(:ids AS integer[])) AND c.status = 'draft'
       AND NOT EXISTS (SELECT FROM images AS i WHERE i.content_id = c.id AND i.status = 'pending')
""")


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
