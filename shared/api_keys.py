"""API keys: random, shown once, stored as SHA-256 (a fast hash is right for 256-bit random keys)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Account, ApiKey

KEY_PREFIX = "ak_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_api_key(session: AsyncSession, account_id: int, name: str = "default") -> str:
    """Create a key for the account and return it (the only time it is visible)."""
    if await session.get(Account, account_id) is None:
        raise LookupError(f"unknown account {account_id}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(account_id=account_id, name=name, key_hash=hash_key(key), prefix=key[:10]))
    await session.flush()
    return key


async def account_for_key(session: AsyncSession, key: str) -> Account | None:
    return await session.scalar(select(Account).join(ApiKey, ApiKey.account_id == Account.id).where(
        ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)))
