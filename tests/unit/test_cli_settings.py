"""Bad configuration gets a clear error naming the variable, and nothing runs."""

from typer.testing import CliRunner

from automation.cli import app
from shared import settings as settings_module


def test_invalid_settings_are_named_and_exit_2(monkeypatch):
    settings_module.get_settings.cache_clear()
    monkeypatch.setenv("AUTOMATION_DATABASE_URL", "mysql://somewhere/db")
    monkeypatch.setenv("AUTOMATION_CONCURRENCY", "lots")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    settings_module.get_settings.cache_clear()
    assert result.exit_code == 2
    assert "invalid setting AUTOMATION_DATABASE_URL: Value error, must be a postgresql+asyncpg:// URL" in result.output
    assert "invalid setting AUTOMATION_CONCURRENCY" in result.output


def test_unknown_consumer_process_is_refused():
    result = CliRunner().invoke(app, ["consume", "stage9"])
    assert result.exit_code == 2
    assert "expected one of control, stage1" in result.output


def test_site_create_refuses_zone_files_that_are_not_iana_names():
    for name in ("localtime", "Factory", "Mars/Olympus_Mons"):
        result = CliRunner().invoke(app, ["site", "create", "--account", "1", "--name", "blog", "--timezone", name])
        assert result.exit_code == 2, result.output
        assert "is not an IANA timezone name" in " ".join(result.output.replace("│", " ").split()), result.output
