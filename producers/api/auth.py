"""API-key authentication: `X-API-Key` header, checked against the stored hashes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import AsyncSession

from producers.api.schemas import Unauthorized
from shared.api_keys import account_for_key
from shared.models import Account

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An account API key.")
# Every router whose endpoints take `current_account` lists this, so the OpenAPI document shows the 401
# (FastAPI documents the header, but not what a missing or wrong key answers).
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {
    "model": Unauthorized, "description": "No X-API-Key header, or a key that is unknown or revoked",
    "headers": {"WWW-Authenticate": {"description": "ApiKey", "schema": {"type": "string"}}}}}


async def request_session(request: Request):  # type: ignore[no-untyped-def]
    """One session per request (shared by every dependency of that request)."""
    async with request.app.state.sessions() as session:
        yield session


async def current_account(session: Annotated[AsyncSession, Depends(request_session)],
                          key: Annotated[str | None, Depends(api_key_header)]) -> Account:
    if not key:
        raise HTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})
    account = await account_for_key(session, key)
    if account is None:
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "ApiKey"})
    return account
