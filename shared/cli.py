"""The `automation` console script: one entry point for every process and tool."""

from __future__ import annotations

import asyncio
import logging

import typer

from pydantic import ValidationError

from shared.settings import Settings
from shared.settings import get_settings as _read_settings

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
    upgrade_schema(get_settings().database_url, revision)
    typer.echo("database schema is up to date")


@app.command()
def consume(
    process: str = typer.Argument(..., help="control, or stage1 ... stage7"),
    concurrency: int = typer.Option(None, "--concurrency", "-c", min=1, max=256,
                                    help="Messages processed at once (default AUTOMATION_CONCURRENCY)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run one consumer process until SIGTERM/SIGINT (in-flight batches finish first)."""
    from consumers.app import PROCESSES, build_app

    if process not in PROCESSES:
        raise typer.BadParameter(f"expected one of {', '.join(PROCESSES)}", param_hint="PROCESS")
    _logging(verbose)
    asyncio.run(build_app(process, get_settings(), concurrency).run())


@app.command()
def demo(
    keywords: int = typer.Option(240, min=1, help="Demo keywords to load."),
    concurrency: int = typer.Option(4, min=1, max=64),
) -> None:
    """Set up a demo account and site, start every consumer, run the pipeline, print a summary."""
    from producers.demo import run_demo

    _logging()
    raise typer.Exit(asyncio.run(run_demo(get_settings(), keywords, concurrency)))


@app.command()
def bench(
    keywords: list[int] = typer.Option([1000], "--keywords", "-n", help="Keyword counts to run (repeatable)."),
    concurrency: int = typer.Option(8, min=1, max=256),
    latency_ms: int = typer.Option(0, min=0, help="Simulated AI latency per call."),
) -> None:
    """Run the pipeline on N keywords with the simulated provider and print performance figures."""
    from bench.pipeline import run_bench

    _logging()
    raise typer.Exit(asyncio.run(run_bench(get_settings(), keywords, concurrency, latency_ms)))


if __name__ == "__main__":
    app()
