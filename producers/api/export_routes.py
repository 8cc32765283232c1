"""`GET /api/v1/automation/export/`: a site's articles as a zip of Markdown or HTML files (`shared.export`).

The selection is a run's articles (`run_id`: the content ids its stage 7 stored), explicit content ids
(`ids`), or neither: the site's content in review (in `status`, when given). `status` narrows a run or
an id list to those statuses. Another account's site or run is a 404, as everywhere in the API, and so
is a selection with nothing of the site's in it. The zip is built completely (in a spooled temporary
file) before the answer starts, so a failure is an error answer, never a truncated download.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, BeforeValidator, Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.background import BackgroundTask

from producers.api import queries
from producers.api.auth import UNAUTHORIZED, current_account, request_session
from producers.api.schemas import Refusal
from shared.events import INT4_MAX, RUN_ID_PATTERN
from shared.export import (
    NothingToExport,
    export_articles,
    run_content_ids,
    safe_slug,
    site_content_ids,
)
from shared.models import CONTENT_STATUSES, Account

MAX_IDS = 1000
READ_CHUNK = 256 * 1024

router = APIRouter(prefix="/api/v1/automation", tags=["export"], responses=UNAUTHORIZED)

AccountDep = Annotated[Account, Depends(current_account)]
SessionDep = Annotated[AsyncSession, Depends(request_session)]


def _split_commas(value: Any) -> Any:
    """`ids=1,2&ids=3` as [1, 2, 3] (each item is then checked as the list's item type)."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return value
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def _known_status(value: str) -> str:
    if value not in CONTENT_STATUSES:
        raise ValueError(f"unknown status; one of {', '.join(CONTENT_STATUSES)}")
    return value


SiteId = Annotated[int, Query(ge=1, le=INT4_MAX, description="The site's id.")]
RunId = Annotated[str | None, Query(pattern=RUN_ID_PATTERN,
                                    description="Export this run's articles (the content ids its stage 7 stored).")]
Ids = Annotated[list[Annotated[int, Field(ge=1, le=INT4_MAX)]] | None,
                Query(max_length=MAX_IDS, description=f"Export these content ids: comma-separated and/or repeated, "
                                                      f"at most {MAX_IDS}."),
                BeforeValidator(_split_commas)]
StatusName = Annotated[str, Field(json_schema_extra={"enum": list(CONTENT_STATUSES)}), AfterValidator(_known_status)]
Statuses = Annotated[list[StatusName] | None,
                     Query(max_length=2 * len(CONTENT_STATUSES),
                           description="Only content in these statuses (comma-separated and/or repeated). Default: "
                                       "every status of a run or id selection; `review` when neither is given."),
                     BeforeValidator(_split_commas)]
ExportFormat = Annotated[Literal["markdown", "html"],
                         Query(alias="format", description="`markdown` (with YAML front matter) or `html`.")]


def _invalid(field: str, message: str, value: object) -> RequestValidationError:
    """A 422 shaped like FastAPI's own validation errors."""
    return RequestValidationError([{"type": "value_error", "loc": ("query", field), "msg": message,
                                    "input": value}])


def _download_name(site_name: str, site_id: int, selection: str, fmt: str) -> str:
    site = safe_slug(site_name, fallback=f"site-{site_id}")
    return f"{site}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', selection).strip('-.') or 'selection'}-{fmt}.zip"


async def _stream(file: IO[bytes]) -> AsyncIterator[bytes]:
    """The file in chunks (read in a thread: past 16 MB it is on disk), closed at the end or on disconnect."""
    try:
        while chunk := await asyncio.to_thread(file.read, READ_CHUNK):
            yield chunk
    finally:
        file.close()


@router.get(
    "/export/", response_class=StreamingResponse, summary="Download articles as a zip (Markdown or HTML)",
    responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                     "description": "The zip: `articles/`, `images/`, `manifest.json` (and `index.html` for html)."},
               404: {"model": Refusal, "description": "Unknown (or another account's) site or run, or a selection "
                                                      "with none of the site's content in it"}})
async def export(site_id: SiteId, request: Request, account: AccountDep, session: SessionDep,
                 run_id: RunId = None, ids: Ids = None, status: Statuses = None,
                 fmt: ExportFormat = "markdown") -> StreamingResponse:
    """The articles of a run (`run_id`), of a list of content ids (`ids`), or, with neither, the site's content
    in review, as a zip: `articles/<slug>.md` with YAML front matter, or `articles/<slug>.html` documents and
    an `index.html`; `images/<content_id>-<image_id>.png`; and `manifest.json`, which lists every article and
    any image missing on disk."""
    if run_id is not None and ids is not None:
        raise _invalid("ids", "give run_id or ids, not both", ids)
    if ids is not None and not ids:
        raise _invalid("ids", "give at least one content id", ids)
    if status is not None and not status:
        raise _invalid("status", "give at least one status, or leave status out", status)
    statuses = list(dict.fromkeys(status)) if status else None
    site = await queries.owned_site(session, account.id, site_id)
    if site is None:
        raise HTTPException(404, f"site {site_id} not found")
    if run_id is not None:
        run = await queries.owned_run(session, account.id, run_id)
        if run is None or run.site_id != site.id:
            raise HTTPException(404, f"run {run_id} not found")
        content_ids = run_content_ids(run)
        if not content_ids:
            raise HTTPException(404, f"run {run_id} has no articles to export (stage 7 has not listed any)")
        selection = run.run_id
    elif ids is not None:
        content_ids, selection = list(dict.fromkeys(ids)), "selection"
    else:
        statuses = statuses or ["review"]
        content_ids, selection = await site_content_ids(session, site.id, statuses), "-".join(statuses)
        if not content_ids:
            raise HTTPException(404, f"site {site_id} has no content with status {' or '.join(statuses)}")
    try:
        result = await export_articles(session, Path(request.app.state.settings.media_dir), site.id, content_ids,
                                       fmt, statuses=statuses, run_id=run_id)
    except NothingToExport as exc:
        raise HTTPException(404, str(exc)) from None
    finally:
        await session.commit()  # end the read transaction before the download: no connection waits on it
    filename = _download_name(site.name, site.id, selection, fmt)
    return StreamingResponse(_stream(result.file), media_type="application/zip", background=BackgroundTask(
        result.file.close), headers={  # closed by the stream's end, or after a client that went away
        "Content-Disposition": f'attachment; filename="{filename}"', "Content-Length": str(result.size),
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
