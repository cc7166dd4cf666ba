"""The web UI in a real browser (headless chromium) against `cairn ui` serving a trained copy of the recsys
example: logging in with a token, the asset graph down to an asset's lineage and metric plot, a run started
from the UI followed live to its end, and a model approved and promoted by an approver after its author's
self-approval was refused. Each flow leaves screenshots among the test artifacts (see conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import AUTHOR, Site

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page

Screenshot = Callable[..., Path]
HTTP_ERROR_LOG = "Failed to load resource: the server responded with a status of"
LIVE_TIMEOUT_MS = 60_000  # how long a released run may take to end (it has one step left, which returns at once)


def log_in(page: Page, site: Site, user: str) -> None:
    page.goto(site.url + "/login")
    page.fill("#token", site.tokens[user])
    page.locator("#login-submit").click()
    page.wait_for_url(site.url + "/assets")


def test_a_token_logs_in_and_a_wrong_one_is_refused(page: Page, site: Site, screenshot: Screenshot) -> None:
    from playwright.sync_api import expect

    page.goto(site.url + "/assets")
    page.wait_for_url(site.url + "/login")  # no session: the login form
    screenshot(page, "login")
    page.fill("#token", "cairn_" + "x" * 43)
    with page.expect_response(lambda r: r.url == site.url + "/login" and r.request.method == "POST") as answer:
        page.locator("#login-submit").click()
    assert answer.value.status == 401
    assert page.url == site.url + "/login"
    expect(page.locator("#token")).to_be_visible()
    expect(page.locator("nav#nav")).to_have_count(0)

    log_in(page, site, "vic")
    expect(page.locator("header")).to_contain_text("vic (viewer)")
    for name in ("world", "ranker", "model"):
        expect(page.locator(f'a[href="/assets/{name}"]').first).to_be_visible()
    assert site.tokens["vic"] not in page.content(), "a page shows the token"
    screenshot(page, "assets", docs=True)


def test_the_graph_leads_to_an_assets_lineage_and_metric_plot(page: Page, site: Site, screenshot: Screenshot) -> None:
    from playwright.sync_api import expect

    log_in(page, site, "vic")
    page.goto(site.url + "/graph")
    graph = page.locator("svg#asset-graph")
    expect(graph).to_be_visible()
    expect(graph.locator("[data-asset]")).to_have_count(len(site.assets))
    for name in site.assets:
        expect(graph.locator(f'[data-asset="{name}"]')).to_have_count(1)
    screenshot(page, "graph", docs=True)

    graph.locator('[data-asset="ranker"]').click()
    page.wait_for_url(site.url + "/assets/ranker")
    lineage = page.locator("#lineage")
    expect(lineage).to_be_visible()
    for upstream in ("split", "training_dataset", "user_features", "world"):  # walked back to the simulated world
        expect(lineage).to_contain_text(upstream)
    expect(page.locator('svg.metric-plot[data-metric="valid_auc"]')).to_be_visible()  # logged by each fit
    screenshot(page, "asset", docs=True)


def test_a_run_started_from_the_ui_is_followed_live_until_it_ends(
    page: Page, held_site: tuple[Site, Path], screenshot: Screenshot
) -> None:
    from playwright.sync_api import expect

    site, release = held_site
    log_in(page, site, "olga")
    start = page.locator('form#run-form[action="/runs"]')
    start.locator('input[name="selection"]').fill("hold")
    start.locator('button[data-action="run"]').click()
    page.wait_for_url(re.compile(re.escape(site.url) + r"/runs/[A-Za-z0-9_.-]+$"))
    run_id = page.url.rsplit("/", 1)[1]

    status = page.locator("#run-status")
    expect(status).to_have_text(re.compile(r"\s*running\s*"))
    step = page.locator('#steps tr[data-step="hold"]')
    expect(step).to_have_attribute("data-status", "running")
    expect(step).to_contain_text("running")
    page.evaluate("window.cairnNotReloaded = true")  # gone if the page reloads
    screenshot(page, "run-running", docs=True)

    release.write_text("go", encoding="utf-8")
    expect(status).to_have_text(re.compile(r"\s*succeeded\s*"), timeout=LIVE_TIMEOUT_MS)
    expect(step).to_have_attribute("data-status", "executed")
    expect(step).to_contain_text("executed")
    expect(page.locator('#timeline [data-step="hold"]')).to_have_attribute("data-status", "executed")
    assert page.evaluate("window.cairnNotReloaded === true"), "the run page reloaded instead of updating in place"
    assert page.url.endswith(f"/runs/{run_id}")
    screenshot(page, "run")

    run = site.api("olga", f"/api/v1/runs/{run_id}")
    assert run["status"] == "succeeded"
    assert [(s["asset"], s["status"]) for s in run["steps"]] == [("hold", "executed")]
    started = site.api("admin", "/api/v1/audit?action=run.start&actor=olga")
    assert [e["subject"] for e in started] == [run_id]


def test_an_approver_approves_and_promotes_a_model_after_its_author_is_refused(
    page: Page, site: Site, screenshot: Screenshot
) -> None:
    from playwright.sync_api import expect

    version = _version(site, 1)
    assert version["author"] == AUTHOR and not version["gates"]["blocking_failed"], version
    version_1 = 'section.model[data-model="model"][data-version="1"]'
    approve = f'{version_1} form[action="/models/model/1/approve"]'
    promote = f'{version_1} form[action="/models/model/1/promote"]'

    log_in(page, site, AUTHOR)
    page.goto(site.url + "/models")
    page.locator(f'{approve} input[name="reason"]').fill("I trained it, so it must be good")
    page.locator(f'{approve} button[data-action="approve"]').click()
    refusal = page.locator("#flash-error")
    expect(refusal).to_be_visible()
    expect(refusal).to_contain_text(f"self-approval is not allowed: {AUTHOR} is the author of model model version 1")
    screenshot(page, "models-refused", docs=True)

    page.context.clear_cookies()
    log_in(page, site, "bob")
    page.goto(site.url + "/models")
    page.locator(f'{approve} input[name="reason"]').fill("beats the popularity baseline on new users")
    page.locator(f'{approve} button[data-action="approve"]').click()
    page.wait_for_url(site.url + "/models")
    expect(page.locator("#flash-error")).to_have_count(0)
    expect(page.locator(f'{promote} button[data-action="promote"]')).to_be_enabled()
    page.locator(f'{promote} input[name="alias"]').fill("champion")
    page.locator(f'{promote} button[data-action="promote"]').click()
    page.wait_for_url(site.url + "/models")
    expect(page.locator("#flash-error")).to_have_count(0)
    screenshot(page, "models")

    shown = _version(site, 1)
    assert shown["aliases"] == ["champion"] and shown["approved_by"] == ["bob"], shown
    refused = site.api("admin", f"/api/v1/audit?action=model.approve_refused&actor={AUTHOR}")
    assert [e["subject"] for e in refused] == ["model@1"], refused
    promoted = site.api("admin", "/api/v1/audit?action=model.promote&actor=bob")
    assert len(promoted) == 1


def _version(site: Site, number: int) -> dict[str, Any]:
    """Model `model`'s version `number` as `GET /api/v1/models` lists it."""
    found: dict[str, Any] = next(v for v in site.api("vic", "/api/v1/models") if v["version"] == number)
    return found


@pytest.fixture(autouse=True)
def _no_script_errors(page: Page) -> Iterator[None]:
    """A page whose script throws, or that the Content-Security-Policy blocks something on, fails its test (a
    refused request's own status, such as the 401 of a wrong token, is what some tests expect)."""
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith(HTTP_ERROR_LOG):
            errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield
    assert not errors, f"the browser logged errors: {errors}"
