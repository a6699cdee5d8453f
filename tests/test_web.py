"""The web console in a real Chromium against a real `sealog serve` with demo data.

Each test checks what the page shows against the JSON API. Screenshots of the main view,
the event modal and the export dialog are written to docs/screenshots/ for the README.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from sealog import auth, sampledata
from sealog.events import Redactor, recorded_by_api_key
from sealog.ingest import ingest
from sealog.store import open_store

from conftest import BACKENDS, SealogProcess, create_database, drop_database

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
PASSWORD = "a demo password 42"
ADMIN = "admin@acme.example"
IN_TWO_ORGS = "pat@example.org"  # an auditor of acme and of globex, with one password
BERLIN = ZoneInfo("Europe/Berlin")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
axe_sync = pytest.importorskip("axe_playwright_python.sync_playwright",
                               reason="axe-playwright-python is not installed")
if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)",
                allow_module_level=True)

expect = sync_api.expect
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=BACKENDS)
def site(request, tmp_path_factory) -> Iterator[dict]:
    """A served data folder on each backend: org acme with 3,000 demo events, users of each
    role, a key; org globex, whose one user is also a user of acme."""
    data = tmp_path_factory.mktemp("web") / "data"
    url = f"sqlite:///{data.resolve() / 'sealog.db'}"
    if request.param == "postgresql":
        admin = request.getfixturevalue("postgres_server")
        name = f"sealog_web_{os.getpid()}"
        url = create_database(admin, name, request.getfixturevalue("postgres_template"))
        request.addfinalizer(lambda: drop_database(admin, name))
    store = open_store(url)
    auth.create_org(store=store, name="Acme Robotics", org_id="acme")
    auth.create_org(store=store, name="Globex Labs", org_id="globex")
    for role in ("owner", "admin", "auditor", "member"):
        email = ADMIN if role == "admin" else f"{role}@acme.example"
        auth.create_user(store=store, org_id="acme", email=email, role=role,
                         password=PASSWORD, name=f"Demo {role.title()}")
    for org_id in ("acme", "globex"):
        auth.create_user(store=store, org_id=org_id, email=IN_TWO_ORGS, role="auditor",
                         password=PASSWORD, name="Pat Both")
    key = auth.create_api_key(store=store, org_id="acme", scopes=list(auth.SCOPES))
    secret = key.secret
    events = list(sampledata.generate_events(3000, days=10))
    for start in range(0, len(events), 1000):  # as if the key had sent them
        ingest(store=store, org_id="acme", raw_events=events[start:start + 1000],
               redactor=Redactor(), recorded_by=recorded_by_api_key(key.row.id))
    store.close()
    # Streams may go to the tests' own receivers, on this machine and over plain HTTP.
    process = SealogProcess(data, env={"SEALOG_CHECKPOINT_INTERVAL": "1",
                                       "SEALOG_STREAMS_ALLOW_PRIVATE": "1",
                                       "SEALOG_STREAMS_ALLOW_HTTP": "1"}, database_url=url)
    process.start()
    api = httpx.Client(base_url=process.base, headers={"Authorization": f"Bearer {secret}"},
                       timeout=30)
    try:
        yield {"base": process.base, "api": api, "url": url}
    finally:
        api.close()
        process.stop()
        print(process.output())


@pytest.fixture(scope="module")
def chromium() -> Iterator:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, site):
    context = chromium.new_context(viewport={"width": 1280, "height": 900},
                                   accept_downloads=True, timezone_id="Europe/Berlin")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(15_000)
    yield page
    context.close()
    assert not errors, errors


def sign_in(page, site, email: str = ADMIN, org_id: str = "acme") -> None:
    page.goto(site["base"] + "/")
    page.get_by_test_id("sign-in-org").fill(org_id)
    page.get_by_test_id("email").fill(email)
    page.get_by_test_id("password").fill(PASSWORD)
    page.get_by_test_id("sign-in").click()
    # Signed in (its audit event stored) once the page shows who, or that they lack access.
    page.locator("[data-testid=who], [data-testid=no-access]").wait_for(state="attached")


def assert_accessible(page) -> None:
    """axe-core (the engine browsers' accessibility audits use) finds no violation at all."""
    found = axe_sync.Axe().run(page).response["violations"]
    assert not found, [(v["impact"], v["id"], v["help"], [n["target"] for n in v["nodes"]])
                       for v in found]


def api_count(site, **params) -> int:
    return site["api"].get("/api/v1/events/count", params=params).json()["count"]


def api_ids(site, **params) -> list[str]:
    page = site["api"].get("/api/v1/events", params={"limit": 50, **params}).json()
    return [e["id"] for e in page["data"]]


def shown_count(page) -> int:
    count = page.get_by_test_id("count")
    expect(count).to_have_attribute("data-count", re.compile(r"^\d+$"))
    return int(count.get_attribute("data-count"))


def wait_for_rows(page, expected_count: int) -> None:
    expect(page.get_by_test_id("count")).to_have_attribute("data-count", str(expected_count))
    if expected_count:
        expect(page.get_by_test_id("event-row").first).to_be_visible()


def row_ids(page) -> list[str]:
    return page.get_by_test_id("event-row").evaluate_all("rows => rows.map(r => r.dataset.eventId)")


def test_sign_in_opens_the_audit_log_newest_first(page, site):
    sign_in(page, site)
    expect(page.get_by_role("heading", name="Organization Audit Log")).to_be_visible()
    subtitle = "Complete activity history across all agents and users."
    expect(page.get_by_text(subtitle)).to_be_visible()
    wait_for_rows(page, api_count(site))
    assert row_ids(page) == api_ids(site)
    first = page.get_by_test_id("event-row").first
    stamp = first.locator("time")
    assert re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}, \d{1,2}:\d{2}:\d{2} [AP]M", stamp.inner_text())
    assert stamp.get_attribute("title").endswith("Z")
    expect(page.get_by_test_id("category")).to_have_value("")
    expect(page.get_by_test_id("range")).to_have_value("24h")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "audit-log.png"))
    assert_accessible(page)


def test_search_shows_only_matching_rows(page, site):
    sign_in(page, site)
    page.get_by_test_id("range").select_option("30d")
    page.get_by_test_id("search").fill("guardrail")
    wait_for_rows(page, api_count(site, range="30d", q="guardrail"))
    assert row_ids(page) == api_ids(site, range="30d", q="guardrail")
    assert "q=guardrail" in page.url and "range=30d" in page.url
    page.get_by_test_id("search").fill('"unclosed')
    error = page.get_by_test_id("search-error")
    expect(error).to_contain_text("unclosed quote")
    expect(page.get_by_test_id("search")).to_have_attribute("aria-invalid", "true")


def test_each_category_filters_the_table(page, site):
    sign_in(page, site)
    page.get_by_test_id("range").select_option("30d")
    for category in ("agent_operations", "policy_changes", "user_actions", "security_events",
                     "system_events"):
        page.get_by_test_id("category").select_option(category)
        wait_for_rows(page, api_count(site, range="30d", category=category))
        categories = page.get_by_test_id("event-row").evaluate_all(
            "rows => rows.map(r => r.dataset.category)")
        assert categories and set(categories) == {category}
        assert row_ids(page) == api_ids(site, range="30d", category=category)


def test_a_custom_range_is_checked_in_the_browser_and_applied(page, site):
    sign_in(page, site)
    page.get_by_test_id("range").select_option("custom")
    page.get_by_test_id("range-from").fill("2030-01-02T10:00")
    page.get_by_test_id("range-to").fill("2030-01-01T10:00")
    page.get_by_test_id("range-apply").click()
    expect(page.get_by_test_id("range-error")).to_have_text("The start must be before the end.")

    # The inputs are in the page's zone (Berlin); the API gets the same instants in UTC.
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
    start = end - timedelta(days=3)
    for testid, instant in (("range-from", start), ("range-to", end)):
        page.get_by_test_id(testid).fill(instant.astimezone(BERLIN).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_test_id("range-apply").click()
    params = {"range": "custom", "from": start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
              "to": end.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    expected = api_count(site, **params)
    assert expected > 0
    wait_for_rows(page, expected)
    assert row_ids(page) == api_ids(site, **params)


def test_more_rows_come_with_load_more_until_the_end(page, site):
    sign_in(page, site)
    page.get_by_test_id("category").select_option("policy_changes")
    page.get_by_test_id("range").select_option("7d")
    total = api_count(site, range="7d", category="policy_changes")
    assert total > 50
    wait_for_rows(page, total)
    grows = "n => document.querySelectorAll('[data-testid=event-row]').length > n"
    page.get_by_test_id("load-more").click()
    page.wait_for_function(grows, arg=50)
    while (shown := len(row_ids(page))) < total:  # the rest come by scrolling down
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_function(grows, arg=shown)
    expect(page.get_by_test_id("event-row")).to_have_count(total)
    assert len(set(row_ids(page))) == total


def test_the_event_modal_shows_the_event_and_verifies_it(page, site):
    sign_in(page, site)
    page.get_by_test_id("range").select_option("7d")
    page.get_by_test_id("search").fill("guardrail method:PUT")
    wait_for_rows(page, api_count(site, range="7d", q="guardrail method:PUT"))
    first_id = row_ids(page)[0]
    event = site["api"].get(f"/api/v1/events/{first_id}").json()
    details = page.get_by_test_id("details").first
    details.click()
    modal = page.get_by_test_id("event-modal")
    expect(modal.get_by_role("heading", name="Audit Event Details")).to_be_visible()
    expect(modal.get_by_test_id("d-event-id")).to_have_text(event["id"])
    expect(modal.get_by_test_id("d-org-id")).to_have_text("acme")
    expect(modal.get_by_test_id("d-actor-id")).to_have_text(event["actor"]["id"])
    expect(modal.get_by_test_id("d-recorded-by")).to_have_text(
        f"API key {event['recorded_by']['id']}")
    expect(modal.get_by_test_id("d-request-line")).to_contain_text(
        f"PUT {event['request']['path']}")
    expect(modal.get_by_test_id("d-action")).to_contain_text(event["description"])
    expect(modal.get_by_test_id("d-resource")).to_contain_text(event["resource"]["type"])
    body = modal.get_by_test_id("d-request-body").inner_text()
    assert json.loads(body) == event["request"]["body"]
    expect(modal.get_by_test_id("d-index")).to_have_text(str(event["index"]))
    expect(modal.get_by_test_id("d-leaf-hash")).to_have_text(event["leaf_hash"])
    proof = modal.get_by_test_id("proof-status")
    expect(proof).to_have_attribute("data-state", "verified")
    expect(proof).to_contain_text("Verified in checkpoint of size")
    expect(proof).to_contain_text("signed by sealog.local")
    assert f"event={first_id}" in page.url
    assert_accessible(page)
    page.set_viewport_size({"width": 1280, "height": 1500})  # the whole modal, proof included
    page.screenshot(path=str(SCREENSHOTS / "event-details.png"))
    page.set_viewport_size({"width": 1280, "height": 900})

    # Focus stays inside the modal; Escape closes it and gives focus back.
    for _ in range(12):
        page.keyboard.press("Tab")
        assert modal.evaluate("m => m.contains(document.activeElement)")
    page.keyboard.press("Escape")
    expect(modal).to_have_count(0)
    assert "event=" not in page.url
    assert details.evaluate("b => b === document.activeElement")


def test_a_tampered_event_fails_the_browser_check(page, site):
    """The page's check is real: the same page code, fed an altered event, says so."""
    sign_in(page, site)
    wait_for_rows(page, api_count(site))
    event = site["api"].get(f"/api/v1/events/{row_ids(page)[0]}").json()
    outcome = page.evaluate(r"""async (event) => {
        const v = await import('/static/verify.js');
        const good = await v.verifyEvent(event);
        const bad = await v.verifyEvent({ ...event, description: event.description + '!' });
        // The proof check itself: the right proof leads to the checkpoint's root, a proof
        // with one flipped bit or for another index does not.
        const cp = v.parseCheckpoint(await (await fetch('/api/v1/log/checkpoint')).text());
        const proof = await (await fetch(
            `/api/v1/log/proof/inclusion?index=${event.index}&tree_size=${cp.size}`)).json();
        const hashes = proof.hashes.map((b) => Uint8Array.from(atob(b), (c) => c.charCodeAt(0)));
        const leaf = await v.leafHash(event);
        const rootOf = async (index, path) => {
            const r = await v.rootFromInclusionProof(index, cp.size, leaf, path);
            return r !== null && v.hex(r) === v.hex(cp.root);
        };
        const flipped = hashes.map((h, i) => i === 0 ? h.map((b, j) => j === 0 ? b ^ 1 : b) : h);
        const key = await (await fetch('/api/v1/log/key')).text();
        const forged = { ...cp, body: cp.body.replace(/\n\d+\n/, '\n1\n') };
        return [good.ok, bad.ok, bad.message, await rootOf(event.index, hashes),
                await rootOf(event.index, flipped), await rootOf(event.index ^ 1, hashes),
                await v.signatureValid(cp, key), await v.signatureValid(forged, key)];
    }""", event)
    assert outcome[0] is True
    assert outcome[1] is False and "do not match its leaf hash" in outcome[2]
    assert outcome[3:] == [True, False, False, True, False]


def test_back_and_forward_restore_filters_and_the_open_event(page, site):
    sign_in(page, site)
    wait_for_rows(page, api_count(site))
    page.get_by_test_id("category").select_option("security_events")
    wait_for_rows(page, api_count(site, category="security_events"))
    page.get_by_test_id("details").first.click()
    expect(page.get_by_test_id("event-modal")).to_be_visible()
    page.go_back()
    expect(page.get_by_test_id("event-modal")).to_have_count(0)
    expect(page.get_by_test_id("category")).to_have_value("security_events")
    page.go_back()
    expect(page.get_by_test_id("category")).to_have_value("")
    wait_for_rows(page, api_count(site))
    page.go_forward()
    expect(page.get_by_test_id("category")).to_have_value("security_events")
    # A link reproduces the view.
    url = page.url
    page.goto(url)
    expect(page.get_by_test_id("category")).to_have_value("security_events")


def test_an_export_is_queued_completes_and_downloads(page, site):
    sign_in(page, site)
    page.get_by_test_id("range").select_option("7d")
    page.get_by_test_id("category").select_option("policy_changes")
    wait_for_rows(page, api_count(site, range="7d", category="policy_changes"))
    page.get_by_test_id("export-open").click()
    dialog = page.get_by_test_id("export-dialog")
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("export-range")).to_have_value("7d")
    expect(page.get_by_test_id("export-cat-policy_changes")).to_be_checked()
    page.get_by_test_id("export-name").fill("policy-week")
    page.screenshot(path=str(SCREENSHOTS / "export-dialog.png"))
    page.get_by_test_id("export-queue").click()
    row = dialog.get_by_test_id("export-row").first
    expect(row).to_have_attribute("data-status", "completed", timeout=30_000)
    with page.expect_download() as download_info:
        row.get_by_test_id("export-download").click()
    download = download_info.value
    assert download.suggested_filename == "policy-week.csv"
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    export_id = row.get_attribute("data-export-id")
    job = site["api"].get(f"/api/v1/exports/{export_id}").json()
    assert len(rows) == job["row_count"] == api_count(site, range="7d",
                                                       category="policy_changes")
    assert {r["Category"] for r in rows} == {"policy_changes"}
    assert_accessible(page)  # the dialog with its list of exports


def test_a_member_sees_no_access(page, site):
    sign_in(page, site, "member@acme.example")
    expect(page.get_by_test_id("no-access")).to_contain_text("No access")
    expect(page.get_by_test_id("events-table")).to_have_count(0)
    assert_accessible(page)


def test_an_auditor_sees_the_log_but_not_the_admin_tabs(page, site):
    sign_in(page, site, "auditor@acme.example")
    expect(page.get_by_test_id("tab-audit")).to_be_visible()
    expect(page.get_by_test_id("tab-keys")).to_have_count(0)
    expect(page.get_by_test_id("tab-members")).to_have_count(0)
    expect(page.get_by_test_id("tab-streams")).to_have_count(0)


def test_a_wrong_password_says_so(page, site):
    page.goto(site["base"] + "/")
    page.get_by_test_id("sign-in-org").fill("acme")
    page.get_by_test_id("email").fill(ADMIN)
    page.get_by_test_id("password").fill("not the password")
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("sign-in-error")).to_have_text(
        "the organization, email or password is wrong")
    assert_accessible(page)


def test_the_sign_in_names_its_org_from_a_link_or_the_last_sign_in(page, site):
    """One email and password with an account in acme and in globex: the org field, filled
    from ?org= or from this browser's last sign-in, says which one is signed in to."""
    page.goto(site["base"] + "/?org=globex")
    org = page.get_by_test_id("sign-in-org")
    expect(org).to_have_value("globex")
    expect(page.get_by_test_id("email")).to_be_focused()
    expect(page.get_by_label("Organization")).to_have_attribute("data-testid", "sign-in-org")
    assert_accessible(page)
    page.get_by_test_id("email").fill(IN_TWO_ORGS)
    page.get_by_test_id("password").fill(PASSWORD)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("org-name")).to_have_text("Globex Labs")
    expect(page.get_by_test_id("who")).to_have_text(f"{IN_TWO_ORGS} · auditor")
    assert "org=" not in page.url
    session = page.request.get(site["base"] + "/api/v1/session").json()
    assert session["org"] == {"id": "globex", "name": "Globex Labs"}
    # Globex's log, which has little more than this sign-in, not acme's thousands.
    count = page.request.get(site["base"] + "/api/v1/events/count").json()["count"]
    assert 1 <= count < 10
    wait_for_rows(page, count)

    page.get_by_test_id("sign-out").click()
    page.goto(site["base"] + "/")
    expect(org).to_have_value("globex")  # remembered from the last sign-in
    expect(page.get_by_test_id("email")).to_be_focused()
    org.fill("acme")
    page.get_by_test_id("email").fill(IN_TWO_ORGS)
    page.get_by_test_id("password").fill(PASSWORD)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("org-name")).to_have_text("Acme Robotics")
    session = page.request.get(site["base"] + "/api/v1/session").json()
    assert session["org"] == {"id": "acme", "name": "Acme Robotics"}


def test_a_key_made_in_the_ui_shows_up_in_the_audit_log(page, site):
    sign_in(page, site)
    page.get_by_test_id("tab-keys").click()
    page.get_by_test_id("key-create").click()
    page.get_by_test_id("key-name").fill("ui-made-key")
    page.get_by_test_id("key-submit").click()
    secret = page.get_by_test_id("key-secret").inner_text()
    assert secret.startswith("slg_key_")
    assert_accessible(page)
    assert httpx.get(site["base"] + "/api/v1/events/count",
                     headers={"Authorization": f"Bearer {secret}"}).status_code == 403
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("key-row").first).to_be_visible()
    assert_accessible(page)  # the API Keys tab
    page.get_by_test_id("tab-members").click()
    expect(page.get_by_test_id("member-row").first).to_be_visible()
    assert_accessible(page)
    page.get_by_test_id("tab-audit").click()
    page.get_by_test_id("search").fill("action:api_key.created ui-made-key")
    wait_for_rows(page, 1)
    expect(page.get_by_test_id("actor").first).to_have_text(ADMIN)


def test_a_stream_made_in_the_console_delivers_and_is_paused_tested_and_deleted(page, site):
    """The Streams tab: a refused address is shown naming it; a webhook stream made there
    (backfill, a query) delivers every matching event to a real receiver that verifies
    each request with the secret the page showed once; the table shows it caught up, then
    failing with the receiver's answer, then caught up again once resumed; pause, the test
    message and delete work, each an audit event; axe finds nothing wrong."""
    from test_streams import Receiver

    receiver = Receiver()
    try:
        sign_in(page, site)
        page.get_by_test_id("tab-streams").click()
        expect(page.get_by_test_id("streams")).to_contain_text("No streams yet")
        assert_accessible(page)
        page.get_by_test_id("stream-create").click()
        page.get_by_test_id("stream-name").fill("SIEM")
        page.get_by_test_id("stream-url").fill("ftp://siem.example.com/x")
        page.get_by_test_id("stream-submit").click()
        expect(page.get_by_test_id("stream-error-message")).to_contain_text("url:")
        page.get_by_test_id("stream-kind").select_option("syslog")
        expect(page.locator("#stream-ca")).to_be_visible()
        page.get_by_test_id("stream-kind").select_option("webhook")
        assert_accessible(page)
        page.get_by_test_id("stream-url").fill(receiver.url)
        page.get_by_test_id("stream-start-beginning").check()
        page.get_by_test_id("stream-query").fill("category:security_events")
        page.get_by_test_id("stream-submit").click()
        secret = page.get_by_test_id("stream-secret").inner_text()
        assert secret.startswith("whsec_")
        receiver.secret = secret
        page.keyboard.press("Escape")
        row = page.get_by_test_id("stream-row")
        expect(row.get_by_test_id("stream-lag")).to_have_text("0 events", timeout=60_000)
        expect(row.get_by_test_id("stream-state")).to_have_text("Active")
        got = receiver.events()
        assert receiver.refused == [] and got
        assert {e["category"] for e in got} == {"security_events"}
        assert [e["index"] for e in got] == sorted({e["index"] for e in got})
        everything = {"range": "custom", "from": "2000-01-01T00:00:00Z"}
        assert len(got) == api_count(site, q="category:security_events", **everything)
        assert_accessible(page)
        page.screenshot(path=str(SCREENSHOTS / "streams.png"))

        # The receiver refuses what comes next: the row shows Failing and its answer.
        receiver.answers = [(400, {}, "unknown tenant token")] * 1000
        assert site["api"].post("/api/v1/events", json={"events": [{
            "action": "security.suspicious_activity", "result": "warning",
            "actor": {"id": "usr_1"}}]}).status_code == 201
        expect(row.get_by_test_id("stream-state")).to_have_text("Failing", timeout=30_000)
        expect(row.get_by_test_id("stream-error")).to_have_text(
            "HTTP 400: unknown tenant token")
        assert_accessible(page)
        receiver.answers.clear()
        row.get_by_test_id("stream-pause").click()
        expect(row.get_by_test_id("stream-state")).to_have_text("Paused")
        row.get_by_test_id("stream-resume").click()  # tried again at once: delivered
        expect(row.get_by_test_id("stream-lag")).to_have_text("0 events", timeout=30_000)
        expect(row.get_by_test_id("stream-state")).to_have_text("Active")
        assert got[-1]["index"] < receiver.events()[-1]["index"]
        row.get_by_test_id("stream-pause").click()
        expect(row.get_by_test_id("stream-state")).to_have_text("Paused")
        row.get_by_test_id("stream-test").click()
        expect(page.get_by_test_id("stream-status")).to_contain_text(
            "took the test message (HTTP 200)")
        assert receiver.bodies[-1]["type"] == "sealog.test"
        page.once("dialog", lambda dialog: dialog.accept())
        row.get_by_test_id("stream-delete").click()
        expect(page.get_by_test_id("streams")).to_contain_text("No streams yet")
        actions = [e["action"] for e in site["api"].get("/api/v1/events", params={
            "q": "action:stream.*", "limit": 50, **everything}).json()["data"]]
        assert sorted(actions) == ["stream.created", "stream.deleted", "stream.paused",
                                   "stream.paused", "stream.resumed"]
    finally:
        receiver.close()


def test_sign_out_returns_to_the_sign_in_form(page, site):
    sign_in(page, site)
    wait_for_rows(page, api_count(site))
    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("sign-in")).to_be_visible()
    page.reload()
    expect(page.get_by_test_id("sign-in")).to_be_visible()


def test_the_page_fits_a_phone_screen(chromium, site):
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        sign_in(page, site)
        wait_for_rows(page, api_count(site))
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 390
        page.get_by_test_id("details").first.click()
        expect(page.get_by_test_id("proof-status")).to_have_attribute("data-state", "verified")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert_accessible(page)
    finally:
        context.close()


def test_the_log_works_from_the_keyboard_alone(page, site):
    page.goto(site["base"] + "/")
    expect(page.get_by_test_id("sign-in-org")).to_be_focused()  # no org known yet: it first
    page.keyboard.type("acme")
    page.keyboard.press("Tab")
    page.keyboard.type(ADMIN)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.get_by_test_id("who").wait_for(state="attached")
    wait_for_rows(page, api_count(site))
    focused = ""
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.dataset.testid || ''")
        if focused == "details":
            break
    assert focused == "details", "the first Details button is reachable by Tab"
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("event-modal")).to_be_visible()
    expect(page.get_by_test_id("proof-status")).to_have_attribute("data-state", "verified")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("event-modal")).to_have_count(0)
    assert page.evaluate("document.activeElement.dataset.testid") == "details"
    # The tabs follow the arrow keys.
    page.get_by_test_id("tab-audit").focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_test_id("tab-keys")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_test_id("tab-keys")).to_be_focused()


# Whether a word inside el is laid out left to right, as stored: with U+202E live before
# it, "gnp.exe" is drawn reversed ("exe.png"), its first letter rightmost.
IN_STORED_ORDER = """([el, word]) => {
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const at = node.data.indexOf(word);
        if (at < 0) continue;
        const left = (i) => {
            const range = document.createRange();
            range.setStart(node, i);
            range.setEnd(node, i + 1);
            return range.getBoundingClientRect().left;
        };
        return left(at) < left(at + word.length - 1);
    }
    return null;
}"""
RLO = "\u202e"
MARKED = "invoice⟨U+202E⟩gnp.exe"


def test_bidi_controls_in_event_text_are_shown_as_stored(page, site):
    """An event's U+202E cannot make invoice\u202egnp.exe read as invoiceexe.png."""
    spoof = f"invoice{RLO}gnp.exe"
    stored = site["api"].post("/api/v1/events", json={"events": [{
        "action": "billing.invoice_uploaded", "category": "user_actions", "result": "success",
        "description": f"Uploaded {spoof}",
        "actor": {"email": "mallory@acme.example", "name": f"Mallory {spoof}"},
        "resource": {"type": "file", "id": "fil_1", "name": spoof},
        "request": {"method": "POST", "path": "/files", "body": {"file": spoof}},
    }]})
    assert stored.status_code == 201, stored.text
    event_id = stored.json()["events"][0]["id"]
    member = site["api"].post("/api/v1/members", json={
        "email": "mallory@acme.example", "name": f"Mallory {spoof}", "role": "auditor"})
    assert member.status_code == 201, member.text
    export = site["api"].post("/api/v1/exports", json={"name": f"q3-{spoof}", "format": "csv"})
    assert export.status_code == 202, export.text

    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site["base"])
    sign_in(page, site)
    page.get_by_test_id("search").fill("action:billing.invoice_uploaded")
    wait_for_rows(page, 1)
    cell = page.get_by_test_id("event-row").get_by_test_id("action")
    assert cell.inner_text() == f"Uploaded {MARKED}"
    assert cell.locator(".hidden-char").get_attribute("title") == "RIGHT-TO-LEFT OVERRIDE"
    assert cell.evaluate("c => c.querySelector('bdi') !== null")  # isolated from its row
    assert page.evaluate(IN_STORED_ORDER, [cell.element_handle(), "gnp.exe"]) is True
    details = page.get_by_test_id("details")
    assert details.get_attribute("aria-label") == f"Details of Uploaded {MARKED}"

    details.click()
    modal = page.get_by_test_id("event-modal")
    action = modal.get_by_test_id("d-action")
    expect(action).to_contain_text(f"Uploaded {MARKED}")
    assert page.evaluate(IN_STORED_ORDER, [action.element_handle(), "gnp.exe"]) is True
    expect(modal.get_by_test_id("d-actor")).to_contain_text("mallory@acme.example")
    assert modal.get_by_test_id("d-resource").inner_text() == f"file · fil_1 · {MARKED}"
    body = modal.get_by_test_id("d-request-body")
    assert body.inner_text() == f'{{\n  "file": "{MARKED}"\n}}'
    assert page.evaluate(IN_STORED_ORDER, [body.element_handle(), "gnp.exe"]) is True
    # What is copied and what is verified is the stored text, not what is shown.
    expect(modal.get_by_test_id("proof-status")).to_have_attribute("data-state", "verified")
    modal.locator(".json-block").first.get_by_test_id("copy").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert json.loads(copied) == site["api"].get(f"/api/v1/events/{event_id}").json()[
        "request"]["body"] == {"file": spoof}
    assert_accessible(page)
    page.keyboard.press("Escape")

    page.get_by_test_id("export-open").click()
    row = page.get_by_test_id("export-dialog").get_by_test_id("export-row").first
    assert row.locator("td").first.inner_text() == f"q3-{MARKED}"
    page.keyboard.press("Escape")
    page.get_by_test_id("tab-members").click()
    member_row = page.locator("[data-testid=member-row][data-email='mallory@acme.example']")
    assert member_row.locator("td").first.inner_text() == f"Mallory {MARKED}"
    assert_accessible(page)


def test_an_owner_sets_the_retention_policy_and_holds_in_settings_an_admin_reads_them(
        page, site):
    sign_in(page, site, "owner@acme.example")
    page.get_by_test_id("tab-settings").click()
    expect(page.get_by_test_id("policy-days")).to_have_text("Forever")
    expect(page.get_by_test_id("no-holds")).to_be_visible()
    assert_accessible(page)
    page.get_by_test_id("policy-input").fill("400")
    page.get_by_test_id("policy-lock").check()
    page.get_by_test_id("policy-save").click()
    expect(page.get_by_test_id("policy-days")).to_contain_text("400 days")
    expect(page.get_by_test_id("policy-locked")).to_be_visible()
    page.get_by_test_id("policy-input").fill("30")
    page.get_by_test_id("policy-save").click()
    expect(page.get_by_test_id("settings-status")).to_contain_text("can only be lengthened")
    page.get_by_test_id("hold-name").fill("Case 12")
    page.get_by_test_id("hold-reason").fill("litigation")
    page.get_by_test_id("hold-from").fill("2026-01-01")
    page.get_by_test_id("hold-place").click()
    row = page.get_by_test_id("hold-row")
    expect(row).to_contain_text("Events that occurred from Jan 1, 2026 to now on")
    expect(row.get_by_test_id("hold-state")).to_have_text("Active")
    assert_accessible(page)
    shown = site["api"].get("/api/v1/retention").json()
    assert (shown["days"], shown["locked"], shown["holds"][0]["name"]) == (400, True, "Case 12")
    row.get_by_test_id("hold-release").click()
    expect(row.get_by_test_id("hold-state")).to_contain_text("Released")
    actions = [e["action"] for e in site["api"].get("/api/v1/events", params={
        "q": "category:user_actions", "limit": 5}).json()["data"]]
    assert actions[:3] == ["legal_hold.released", "legal_hold.placed", "retention.changed"]

    page.get_by_test_id("sign-out").click()
    sign_in(page, site)  # the admin
    page.get_by_test_id("tab-settings").click()
    expect(page.get_by_test_id("policy-days")).to_contain_text("400 days")
    expect(page.get_by_text("Only an owner can change the policy.")).to_be_visible()
    expect(page.get_by_test_id("policy-save")).to_have_count(0)
    expect(page.get_by_test_id("hold-release")).to_have_count(0)


def test_erased_events_show_as_erased_and_their_place_still_verifies(page, site):
    """Last in this module: it erases events of the shared site."""
    from sealog import erasure

    actor = site["api"].get("/api/v1/events", params={"range": "7d"}).json()["data"][0][
        "actor"]["id"]
    store = open_store(site["url"])
    try:
        matched = erasure.matching(store, "acme", f"actor:{actor}")
        done = erasure.erase(store=store, redactor=Redactor(), org_id="acme",
                             actor={"id": "owner", "type": "user"}, query=f"actor:{actor}",
                             reason="GDPR request", expected=len(matched.events))
    finally:
        store.close()
    sign_in(page, site)
    page.get_by_test_id("range").select_option("30d")
    page.get_by_test_id("search").fill("action:erased")
    wait_for_rows(page, len(done.indexes))
    first = page.get_by_test_id("event-row").first
    expect(first.get_by_test_id("action")).to_have_text(
        f"Erased (request at index {done.request_index})")
    expect(first.get_by_test_id("actor")).to_have_text("erased")
    first.get_by_test_id("details").click()
    proof = page.get_by_test_id("event-modal").get_by_test_id("proof-status")
    expect(proof).to_have_attribute("data-state", "verified")
    expect(proof).to_contain_text(f"Erased by the request at index {done.request_index}")
    assert_accessible(page)
