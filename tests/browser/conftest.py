"""Fixtures of the browser tests: Debian's chromium driven by Playwright, and `cairn ui` serving a trained copy of
the recsys example as a real subprocess on a free loopback port.

Without playwright or /usr/bin/chromium the tests are skipped with the reason, unless ``$CAIRN_REQUIRE_BROWSER``
is set (CI sets it): then a missing browser is an error. Screenshots are written to ``$CAIRN_TEST_ARTIFACTS``
(default: a temporary folder); with ``$CAIRN_UPDATE_SCREENSHOTS=1`` they also replace docs/images/*.png, the
pictures of docs/ui.md.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cairn.config import load_settings
from cairn.security import add_user
from cairn.storage.metadata import open_metadata

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "recsys"
DOC_IMAGES = REPO / "docs" / "images"
CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_VARIABLE = "CAIRN_REQUIRE_BROWSER"
ARTIFACTS_VARIABLE = "CAIRN_TEST_ARTIFACTS"
UPDATE_VARIABLE = "CAIRN_UPDATE_SCREENSHOTS"
# 200 users and ~32,000 events: the same 347 steps as the default scale in about a third of the time, and a
# model that still passes the example's gates (so it can be approved and promoted).
SCALE = 0.1
# Chromium flags for a machine without a network: without the background-networking ones it keeps dialling
# out (updates, sync, field trials) and its connections are refused.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
USERS = {"admin": "admin", "alice": "approver", "bob": "approver", "olga": "operator", "vic": "viewer"}
AUTHOR = "alice"  # trains the models: an approver who may not approve her own versions


# A step that runs until the test lets it finish (by creating a file), so that a run started from the UI is
# still running when its page is first shown, whatever the machine's speed.
HOLD_MODULE = '''
"""A step that waits for the browser test to release it: the run it belongs to stays running until then."""

import time
from pathlib import Path

from cairn import asset


@asset
def hold() -> str:
    release = Path({release!r})
    deadline = time.monotonic() + 120
    while not release.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"nobody created {{release}} within two minutes")
        time.sleep(0.05)
    return release.read_text(encoding="utf-8")
'''


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -e '.[dev]'"
    if not CHROMIUM.is_file():
        return f"no browser at {CHROMIUM}: apt-get install chromium"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserContext]:
    """One headless chromium for the session, with a fresh profile folder; each test clears its cookies."""
    reason = _unavailable()
    if reason is not None:
        if os.environ.get(REQUIRE_VARIABLE):
            pytest.fail(f"${REQUIRE_VARIABLE} is set but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="cairn-chromium-") as profile, sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": 1280, "height": 800},
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    """A new tab without any session cookie."""
    browser.clear_cookies()
    tab = browser.new_page()
    try:
        yield tab
    finally:
        tab.close()


@dataclass
class Server:
    """A `cairn ui` subprocess on a loopback port."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class Site:
    """A trained copy of the recsys example, its users' tokens and the server that serves it."""

    root: Path
    tokens: dict[str, str]
    assets: list[str]
    server: Server
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, user: str, path: str) -> Any:
        """GET an API route with `user`'s bearer token; the decoded JSON."""
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.tokens[user]}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cairn_cli(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", "-C", str(root), *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=300,
    )
    assert done.returncode == 0, f"cairn {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def start_server(root: Path, env: dict[str, str], log: Path) -> Server:
    """`cairn ui -C root --port P` in a subprocess, once it answers."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cairn.cli.main", "ui", "-C", str(root), "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(f"cairn ui exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(server.url + "/login", timeout=5) as answer:
                if answer.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"cairn ui did not answer within 60 s:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


def small_copy(target: Path) -> Path:
    """A copy of the example (without local state) at `SCALE`, with one worker process per core."""
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".cairn", "__pycache__"))
    config = target / "cairn.toml"
    default = "world = { scale = 1.0, seed = 7 }"
    text = config.read_text(encoding="utf-8")
    assert default in text, "the example's cairn.toml no longer sets the world's scale where this test expects it"
    config.write_text(text.replace(default, f"world = {{ scale = {SCALE}, seed = 7 }}"), encoding="utf-8")
    return target


@pytest.fixture(scope="session")
def site(browser: BrowserContext, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The recsys example trained twice by alice (learning rates 0.08 and 0.05: two model versions, two points
    of each ranker metric), one user per role, and `cairn ui` serving it."""
    base = tmp_path_factory.mktemp("ui")
    root = small_copy(base / "recsys")
    settings = load_settings(root)
    with open_metadata(settings.database, settings.root) as meta:
        tokens = {"admin": add_user(meta, "admin", "admin", None)}
        for name, role in USERS.items():
            if name != "admin":
                tokens[name] = add_user(meta, name, role, "admin")
    env = {k: v for k, v in os.environ.items() if k != "CAIRN_TOKEN"}
    trained = {**env, "CAIRN_TOKEN": tokens[AUTHOR]}
    first = json.loads(cairn_cli(root, "run", "--json", env=trained).stdout)
    assert first["status"] == "succeeded", first
    second = json.loads(cairn_cli(root, "run", "--json", "--set", "ranker.learning_rate=0.05", env=trained).stdout)
    assert second["status"] == "succeeded", second
    assets = [a["asset"] for a in json.loads(cairn_cli(root, "list", "--json", env=env).stdout)]
    server = start_server(root, env, base / "ui.log")
    try:
        yield Site(root, tokens, assets, server, env)
    finally:
        server.stop()


@pytest.fixture
def held_site(site: Site, tmp_path: Path) -> Iterator[tuple[Site, Path]]:
    """The same project with one more asset, `hold`, that runs until the returned file exists; served by a
    second `cairn ui` (the first one keeps the example's own modules)."""
    release = tmp_path / "release"
    module = site.root / "pipeline" / "hold.py"
    module.write_text(textwrap.dedent(HOLD_MODULE.format(release=str(release))), encoding="utf-8")
    config = site.root / "cairn.toml"
    text = config.read_text(encoding="utf-8")
    listed = '"pipeline.release"]'
    assert listed in text, "the example's cairn.toml no longer lists its modules where this test expects it"
    config.write_text(text.replace(listed, '"pipeline.release", "pipeline.hold"]'), encoding="utf-8")
    server = start_server(site.root, site.env, tmp_path / "ui.log")
    try:
        yield Site(site.root, site.tokens, [*site.assets, "hold"], server, site.env), release
    finally:
        release.write_text("released at teardown", encoding="utf-8")  # a step still waiting ends
        server.stop()
        config.write_text(text, encoding="utf-8")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$CAIRN_TEST_ARTIFACTS``, else a temporary folder."""
    given = os.environ.get(ARTIFACTS_VARIABLE)
    folder = Path(given) if given else tmp_path_factory.mktemp("artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def screenshot(artifacts: Path) -> Callable[..., Path]:
    """``screenshot(page, name, full_page=False, docs=False)``: a PNG among the artifacts; one that docs/ui.md
    shows (`docs`) is also copied to docs/images/ui-NAME.png when ``$CAIRN_UPDATE_SCREENSHOTS=1``."""

    def take(tab: Page, name: str, *, full_page: bool = False, docs: bool = False) -> Path:
        path = artifacts / f"{name}.png"
        tab.screenshot(path=str(path), full_page=full_page)
        assert path.stat().st_size > 0
        if docs and os.environ.get(UPDATE_VARIABLE) == "1":
            DOC_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOC_IMAGES / f"ui-{name}.png")
        return path

    return take
