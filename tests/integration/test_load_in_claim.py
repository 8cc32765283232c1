"""Stage 6 loads a batch's images in its claim's statement (`LoadInClaim`): a round trip less per batch.

What it loads must be exactly what the stage's own `load` returns at that moment: the batch's images
still pending, re-checked (an image generated meanwhile is left out), nothing for a claim that fails.
"""

from __future__ import annotations

from sqlalchemy import select, update

from consumers.batches import claim_batch, process_batch
from consumers.registry import STAGE_WORK
from shared.db import autocommit_session
from shared.models import Image, StageBatch
from tests.integration.test_finish_groups import quick, stage_batches

IMAGES = STAGE_WORK[6]


async def test_the_claim_loads_what_load_would_and_only_once(deps, make_site):
    fast = quick(deps, False)
    site = await make_site(keywords=16, synthetic=True, stage_6_batch_size=3)
    _, batches = await stage_batches(fast, site.id, stage=6)
    first, second = batches[0], batches[1]
    async with fast.sessions() as session:
        image_ids = (await session.scalar(select(StageBatch.item_ids).where(StageBatch.id == second.batch_id)))
    assert len(image_ids) == 3
    async with fast.sessions() as session, session.begin():  # one image of the second batch is done already
        await session.execute(update(Image).where(Image.id == image_ids[1]).values(status="generated"))

    assert IMAGES.load_in_claim is not None
    async with autocommit_session(fast.sessions) as session:
        claim = await claim_batch(fast, first, session, IMAGES.load_in_claim)
        assert claim is not None and claim.inputs
        assert claim.inputs == await IMAGES.load(session, site.id, claim.item_ids)
        assert await claim_batch(fast, first, session, IMAGES.load_in_claim) is None  # held by a live claim

        other = await claim_batch(fast, second, session, IMAGES.load_in_claim)
        assert other is not None
        assert [image.id for image in other.inputs] == [image_ids[0], image_ids[2]]
        assert other.inputs == await IMAGES.load(session, site.id, other.item_ids)
        assert all(image.site_id == site.id and image.prompt for image in other.inputs)


async def test_a_batch_whose_images_are_all_done_finishes_with_nothing(deps, make_site):
    fast = quick(deps, False)
    site = await make_site(keywords=16, synthetic=True, stage_6_batch_size=2)
    _, batches = await stage_batches(fast, site.id, stage=6)
    async with fast.sessions() as session, session.begin():
        ids = await session.scalar(select(StageBatch.item_ids).where(StageBatch.id == batches[0].batch_id))
        await session.execute(update(Image).where(Image.id.in_(ids)).values(status="generated"))
    await process_batch(fast, batches[0], IMAGES)
    async with fast.sessions() as session:
        batch = await session.get(StageBatch, batches[0].batch_id)
        assert batch is not None and (batch.status, batch.items_out, batch.credits) == ("done", 0, 0)
