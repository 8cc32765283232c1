"""The `automation` console script: one entry point for every process and tool."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from automation import event_loop
from shared.settings import Settings
from shared.settings import get_settings as _read_settings

T = TypeVar("T")
app = typer.Typer(help="Event-driven AI content automation pipeline.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def get_settings() -> Settings:
    """The settings, or a clear message naming each bad variable (and exit code 2)."""
    try:
        return _read_settings()
    except ValidationError as error:
        for problem in error.errors():
            name = "AUTOMATION_" + "_".join(str(part) for part in problem["loc"]).upper()
            typer.echo(f"invalid setting {name}: {problem['msg']}", err=True)
        raise typer.Exit(2) from None


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Create the database if missing and migrate it to the latest schema."""
    from shared.db import upgrade_schema

    _logging()
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    upgrade_schema(get_settings().database_url, revision)
    typer.echo("database schema is up to date")


@app.command()
def consume(
    process: str = typer.Argument(..., help="control, stage1 ... stage7, publish or notify"),
    concurrency: int = typer.Option(None, "--concurrency", "-c", min=1, max=256,
                                    help="Messages processed at once (default AUTOMATION_CONCURRENCY)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run one consumer process until SIGTERM/SIGINT (in-flight batches finish first)."""
    from consumers.app import PROCESSES, build_app

    if process not in PROCESSES:
        raise typer.BadParameter(f"expected one of {', '.join(PROCESSES)}", param_hint="PROCESS")
    _logging(verbose)
    settings = get_settings()
    event_loop.run(build_app(process, settings, concurrency).run(), settings.event_loop)


@app.command()
def demo(
    keywords: int = typer.Option(240, min=1, help="Demo keywords to load."),
    concurrency: int = typer.Option(4, min=1, max=64),
) -> None:
    """Set up a demo account and site, start every consumer, run the pipeline, print a summary."""
    from automation.demo import run_demo

    _logging()
    settings = get_settings()
    raise typer.Exit(event_loop.run(run_demo(settings, keywords, concurrency), settings.event_loop))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run the benchmarks (`python -m bench --help` lists the options). They ship with the source
    checkout, not with the package: this only starts them, it does not import them."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("bench") is None:
        typer.echo("the benchmarks are in the source checkout: run `python -m bench` from it", err=True)
        raise typer.Exit(2)
    raise typer.Exit(subprocess.call([sys.executable, "-m", "bench", *ctx.args]))


@app.command()
def api(host: str = typer.Option("0.0.0.0"), port: int = typer.Option(8000, min=1, max=65535)) -> None:
    """Serve the HTTP API (/api/v1/automation/, /docs, /asyncapi.json)."""
    import uvicorn

    from automation.contract import asyncapi_document
    from producers.api.app import create_app

    _logging()
    settings = get_settings()
    uvicorn.run(create_app(settings, asyncapi_document(settings)), host=host, port=port, log_level="info",
                loop="uvloop" if event_loop.loop_factory(settings.event_loop) else "asyncio")


@app.command("secret-key")
def secret_key() -> None:
    """Print a new random key for AUTOMATION_SECRET_KEY (encrypts the publish targets' passwords)."""
    from shared.secrets import new_secret_key

    typer.echo(new_secret_key())


@app.command("scheduler")
def scheduler_command() -> None:
    """Run the scheduler: emits run.start (trigger=scheduled) at each site's configured time."""
    from scheduler.app import run_scheduler

    _logging()
    settings = get_settings()
    event_loop.run(run_scheduler(settings), settings.event_loop)


account_app = typer.Typer(help="Accounts.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
site_app = typer.Typer(help="Sites and their keywords.", no_args_is_help=True)
app.add_typer(account_app, name="account")
app.add_typer(apikey_app, name="apikey")
app.add_typer(site_app, name="site")


async def _in_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from shared.db import make_engine, make_sessionmaker

    engine = make_engine(get_settings(), pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


@account_app.command("create")
def account_create(name: str, credits: int = typer.Option(0, min=0, help="Initial credits.")) -> None:
    """Create an account; prints its id."""
    from shared.accounts import create_account

    account = asyncio.run(_in_session(lambda session: create_account(session, name, credits)))
    typer.echo(f"account {account.id} ({name}) created with {credits} credits")


@account_app.command("credit")
def account_credit(account_id: int, amount: int = typer.Argument(..., min=1)) -> None:
    """Add credits to an account."""
    from shared.credits import grant

    balance = asyncio.run(_in_session(lambda session: grant(session, account_id, amount, "top-up (cli)")))
    typer.echo(f"account {account_id} balance: {balance}")


@apikey_app.command("create")
def apikey_create(account_id: int = typer.Option(..., "--account"), name: str = "default") -> None:
    """Create an API key for an account; the key is printed once and stored hashed."""
    from shared.api_keys import create_api_key

    try:
        key = asyncio.run(_in_session(lambda session: create_api_key(session, account_id, name)))
    except LookupError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    typer.echo(key)


@site_app.command("create")
def site_create(account_id: int = typer.Option(..., "--account"), name: str = typer.Option(...),
                timezone: str = typer.Option("UTC"),
                keywords: typer.FileText = typer.Option(None, help="A file with one keyword per line.")) -> None:
    """Create a site (with its automation config) and optionally load keywords."""
    from shared.accounts import add_keywords, create_site
    from shared.models import Account
    from shared.schedule import iana_zone_error, is_iana_zone

    if not is_iana_zone(timezone):
        raise typer.BadParameter(iana_zone_error(timezone), param_hint="--timezone")
    lines = [line.strip() for line in keywords] if keywords else []

    async def work(session):  # type: ignore[no-untyped-def]
        account = await session.get(Account, account_id)
        if account is None:
            raise typer.BadParameter(f"unknown account {account_id}", param_hint="--account")
        site = await create_site(session, account, name, timezone)
        added = await add_keywords(session, site, [(k, 0) for k in lines if k])
        return site, added

    site, added = asyncio.run(_in_session(work))
    typer.echo(f"site {site.id} ({name}) created with {added} keywords")


if __name__ == "__main__":
    app()
