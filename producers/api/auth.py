"""API-key authentication: `X-API-Key` header, checked against the stored hashes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import AsyncSession

from shared.api_keys import account_for_key
from shared.models import Account

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An account API key.")


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
