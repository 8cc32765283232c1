"""Throwaway WordPress sites for the tests: the real WordPress of Debian's package (scripts/setup-wordpress
installs it), each site with a MariaDB database, wp-config and uploads directory of its own, served by
`php -S` on a free port, so tests never share posts, terms or media and need no web server or Docker.

    async with throwaway_wordpress(tmp_path) as wordpress:
        async with WordPressClient(wordpress.site) as wp: ...
        await wordpress.stop()    # an outage: connections are refused
        await wordpress.start()   # back, same address, same content
        await wordpress.posts()   # every post (drafts, scheduled), as an editor sees it

How it fits Debian's package: Debian's /usr/share/wordpress/wp-config.php reads
/etc/wordpress/config-<host>.php; tests/wordpress_php/router.php loads the site's own wp-config.php first and
names /etc/wordpress/config-automation-tests.php (which setup-wordpress writes, empty), so one WordPress
installation serves any number of sites side by side. tests/wordpress_php/site.php creates (wp_install and an
application password, as wp-cli would) and drops them.

MariaDB is reached as AUTOMATION_TEST_MYSQL, default mysql://root@127.0.0.1:3306.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from shared.wordpress import WordPressSite

WORDPRESS = Path("/usr/share/wordpress")
DEBIAN_CONFIG = Path("/etc/wordpress/config-automation-tests.php")
PHP_DIR = Path(__file__).parent / "wordpress_php"
MYSQL_URL = os.environ.get("AUTOMATION_TEST_MYSQL", "mysql://root@127.0.0.1:3306")
ADMIN = "admin"
# Pretty permalinks, as on most real sites: the REST API is at /wp-json/. "" gives plain links, where only
# ?rest_route= reaches it.
PRETTY_PERMALINKS = "/%postname%/"


def missing_wordpress() -> str | None:
    """Why no site can be made here, or None."""
    if shutil.which("php") is None:
        return "PHP is not installed"
    if not (WORDPRESS / "wp-settings.php").is_file():
        return "Debian's wordpress package is not installed"
    if not DEBIAN_CONFIG.is_file():
        return f"{DEBIAN_CONFIG} is missing"
    modules = subprocess.run(["php", "-m"], capture_output=True, text=True, check=False).stdout.lower().split()
    if "mysqli" not in modules or "gd" not in modules:
        return "PHP's mysqli or gd extension is missing"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def php_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class ThrowawayWordPress:
    """A running test site. `site` is what a user would enter (address, admin, application password)."""

    site: WordPressSite
    directory: Path
    database: str
    port: int
    _server: asyncio.subprocess.Process | None = field(default=None, repr=False)
    _http: httpx.AsyncClient | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Serves the site (again) on its port; returns once connections are accepted."""
        if self._server is not None and self._server.returncode is None:
            return
        env = {**os.environ, "AUTOMATION_WORDPRESS_SITE": str(self.directory),
               "PHP_CLI_SERVER_WORKERS": "3"}  # a REST call and an upload at once, as from concurrent consumers
        with (self.directory / "server.log").open("ab") as log:
            self._server = await asyncio.create_subprocess_exec(
                "php", "-d", "display_errors=0", "-d", "log_errors=1",
                "-d", f"error_log={self.directory / 'php-errors.log'}", "-d", "memory_limit=256M",
                "-d", "post_max_size=64M", "-d", "upload_max_filesize=64M",
                "-S", f"127.0.0.1:{self.port}", "-t", str(WORDPRESS), str(PHP_DIR / "router.php"),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._server.returncode is not None:
                raise RuntimeError(f"php -S exited with {self._server.returncode}; see {self.directory}/server.log")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        raise RuntimeError(f"php -S did not listen on port {self.port} within 20s")

    async def stop(self) -> None:
        """Ends the server and its workers (its own process group); the port refuses connections after."""
        server, self._server = self._server, None
        if server is None or server.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(server.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            await server.wait()

    async def rest(self, method: str, route: str, **kwargs: Any) -> httpx.Response:
        """A REST call as the admin, independent of the client under test (always ?rest_route=)."""
        if self._http is None:
            self._http = httpx.AsyncClient(auth=(self.site.username, self.site.application_password), timeout=30)
        params = {"rest_route": "/" + route.strip("/"), **kwargs.pop("params", {})}
        return await self._http.request(method, f"{self.url}/", params=params, **kwargs)

    async def _all(self, route: str, **params: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            response = await self.rest("GET", route, params={"context": "edit", "per_page": "100",
                                                             "page": str(page), **params})
            response.raise_for_status()
            items.extend(response.json())
            if page >= int(response.headers.get("X-WP-TotalPages", "1")):
                return items
            page += 1

    async def posts(self) -> list[dict[str, Any]]:
        """Every post but those in the trash: published, drafts, scheduled, private, pending."""
        return await self._all("wp/v2/posts", status="any")

    async def media(self) -> list[dict[str, Any]]:
        return await self._all("wp/v2/media")

    async def delete_post(self, post_id: int, *, force: bool) -> None:
        """`force`: deleted for good; otherwise moved to the trash, as the admin screens do."""
        response = await self.rest("DELETE", f"wp/v2/posts/{post_id}", params={"force": "true" if force else "false"})
        response.raise_for_status()

    async def close(self) -> None:
        await self.stop()
        if self._http is not None:
            await self._http.aclose()
            self._http = None


async def php(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "php", "-d", "display_errors=stderr", str(PHP_DIR / "site.php"), *args,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"php site.php {args[0]} failed ({process.returncode}): {err.decode()[-2000:]}")
    return out.decode()


def write_config(directory: Path, database: str, port: int) -> None:
    mysql = urlsplit(MYSQL_URL)
    home = f"http://127.0.0.1:{port}"
    content = directory / "wp-content"
    (content / "uploads").mkdir(parents=True)
    for shared in ("themes", "plugins"):
        (content / shared).symlink_to(WORDPRESS / "wp-content" / shared)
    constants = {
        "AUTOMATION_TEST_SITE": str(directory),
        "DB_NAME": database, "DB_USER": unquote(mysql.username or "root"),
        "DB_PASSWORD": unquote(mysql.password or ""),
        "DB_HOST": f"{mysql.hostname or '127.0.0.1'}:{mysql.port or 3306}",
        "DB_CHARSET": "utf8mb4", "DB_COLLATE": "",
        "WP_HOME": home, "WP_SITEURL": home,
        "WP_CONTENT_DIR": str(content), "WP_CONTENT_URL": f"{home}/wp-content",
        # application passwords need https, or this
        "WP_ENVIRONMENT_TYPE": "local",
        **{key: secrets.token_hex(32) for key in (
            "AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY",
            "AUTH_SALT", "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT")},
        "ABSPATH": f"{WORDPRESS}/",
    }
    lines = ["<?php", "// A throwaway test site of tests/wordpress.py."]
    lines += [f"define({php_string(key)}, {php_string(value)});" for key, value in constants.items()]
    lines += [
        # No cron (it would call wordpress.org from inside a request), no updates, no requests leaving the
        # machine: a request never waits on the internet.
        "define('DISABLE_WP_CRON', true);",
        "define('AUTOMATIC_UPDATER_DISABLED', true);",
        "define('WP_HTTP_BLOCK_EXTERNAL', true);",
        "$table_prefix = 'wp_';",
    ]
    (directory / "wp-config.php").write_text("\n".join(lines) + "\n")


@contextlib.asynccontextmanager
async def throwaway_wordpress(tmp_dir: Path, *, permalinks: str = PRETTY_PERMALINKS,
                              title: str = "Automation test site") -> AsyncIterator[ThrowawayWordPress]:
    """A freshly installed site, running; at the end its server is stopped and its database dropped (the
    directory, with server.log and php-errors.log, stays in `tmp_dir`). Skips the test when WordPress or
    PHP is not installed."""
    if reason := missing_wordpress():
        pytest.skip(f"{reason}: run scripts/setup-wordpress")
    database = f"wp_{secrets.token_hex(5)}"
    directory = Path(tmp_dir) / database
    directory.mkdir(parents=True)
    port = free_port()
    write_config(directory, database, port)
    admin_password = secrets.token_urlsafe(16)
    try:
        installed = json.loads(await php("install", str(directory), title, ADMIN, "admin@example.com",
                                         admin_password, permalinks))
        wordpress = ThrowawayWordPress(
            site=WordPressSite(f"http://127.0.0.1:{port}", ADMIN, installed["application_password"]),
            directory=directory, database=database, port=port)
        try:
            await wordpress.start()
            yield wordpress
        finally:
            await wordpress.close()
    except BaseException:
        with contextlib.suppress(Exception):  # the database may not exist: the first error is the one to see
            await php("drop", str(directory))
        raise
    await php("drop", str(directory))
