"""Engine and session factories, and the schema upgrade that creates the database first."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from shared.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(settings: Settings, pool_size: int = 10, pre_ping: bool = True) -> AsyncEngine:
    """One engine per process, built at start-up (never at import).

    The pool holds up to `pool_size` connections and a quarter more (at least one), opened as they
    are needed and then kept; a checkout beyond that waits for one to come back. None of them is an
    overflow connection: the pool closes those when they are returned, and a consumer whose demand
    crosses the pool's size at every burst of batches then opened and closed connections all the time
    (318 connections opened in a 1,000-keyword run against 65 kept), each costing a new PostgreSQL
    backend, its cold caches and asyncpg's type introspection (about 10 ms of the server's CPU).

    Consumers turn `pre_ping` off: it costs a round trip per checkout on the hot path, and a
    connection that died with the server fails its statement, which invalidates the pool and
    sends the batch to the retry path anyway.
    """
    return create_async_engine(settings.database_url, pool_size=pool_size + max(1, pool_size // 4), max_overflow=0,
                               pool_pre_ping=pre_ping)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@contextlib.asynccontextmanager
async def autocommit_session(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session whose statements each commit on their own: no BEGIN/COMMIT round trips, for
    reads and for single-statement changes that are atomic by themselves."""
    engine = sessions.kw["bind"]
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        async with sessions(bind=connection) as session:
            yield session


STALE_SHARE = 0.1  # a tenth of a table changed since its last ANALYZE ...
STALE_MIN_ROWS = 1000  # ... and at least this many rows: a small table's plans do not matter
CHANGED_SINCE_ANALYZE = text("""
    SELECT n_mod_since_analyze, n_live_tup FROM pg_stat_user_tables
     WHERE relname = :table AND schemaname = current_schema()
""")


async def analyze_if_stale(sessions: async_sessionmaker[AsyncSession], table: str) -> bool:
    """Refresh the planner's statistics of `table` (one of ours) when much of it changed since its
    last ANALYZE; True if it did. A stage's batches run right after a bulk change (an import, the
    previous stage's writes), and autovacuum analyzes a minute later at best, never where it is
    off. With no statistics the planner takes a partial index on `site_id` for a one-row match,
    and every batch's by-id query walks the whole site: 250 ms a batch at 100,000 keywords."""
    async with autocommit_session(sessions) as session:
        row = (await session.execute(CHANGED_SINCE_ANALYZE, {"table": table})).first()
        if row is None or row.n_mod_since_analyze < max(STALE_MIN_ROWS, STALE_SHARE * row.n_live_tup):
            return False
        await session.execute(text(f'ANALYZE "{table}"'))
        return True


async def create_database_if_missing(database_url: str) -> bool:
    """Create the target database if it does not exist; True when it was created."""
    url = make_url(database_url)
    name = url.database
    if not name:
        raise ValueError("AUTOMATION_DATABASE_URL names no database")
    conn = await asyncpg.connect(
        host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username,
        password=url.password, database="postgres",
    )
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await conn.close()


async def drop_database(database_url: str) -> None:
    """Drop a database (tests use one per run)."""
    url = make_url(database_url)
    conn = await asyncpg.connect(
        host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username,
        password=url.password, database="postgres",
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await conn.close()


def alembic_config(database_url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_schema(database_url: str, revision: str = "head") -> None:
    """`automation db upgrade`: create the database if needed, then run Alembic to `revision`."""
    from alembic import command

    asyncio.run(create_database_if_missing(database_url))
    command.upgrade(alembic_config(database_url), revision)


@contextlib.asynccontextmanager
async def advisory_locked(sessions: async_sessionmaker[AsyncSession], key: int
                          ) -> AsyncIterator[Callable[[], AsyncSession] | None]:
    """Hold PostgreSQL's session-level advisory lock `key` on a connection of its own for the block;
    yields sessions bound to that connection (all the holder's database work goes through it, so a
    holder never waits for a second pooled connection), or None when another session holds the lock.
    A holder killed mid-way loses its connection, and the lock with it, at once."""
    engine = sessions.kw["bind"]
    async with engine.connect() as connection:
        held = bool(await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
        await connection.commit()
        try:
            yield partial(sessions, bind=connection) if held else None
        finally:
            if held:
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                await connection.commit()
