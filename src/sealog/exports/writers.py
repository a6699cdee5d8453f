"""Export writers: CSV, Excel and the verifiable JSON Lines bundle, streaming, oldest first."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from sealog.store.base import StoredDoc

FORMATS = {"csv": "text/csv", "xlsx":
           "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
           "jsonl": "application/x-ndjson"}
COLUMNS = ["Timestamp", "Event Type", "Category", "Actor", "Actor ID", "Action", "Description",
           "Result", "Resource Type", "Resource ID", "Method", "Path", "IP", "Event ID",
           "Organization ID", "Index", "Leaf Hash"]
EXCEL_EXTRA_COLUMNS = ["Request Body", "Response"]
EXCEL_ROWS_PER_SHEET = 1_048_575  # Excel's 1,048,576 rows, less the header
EXCEL_CELL_LIMIT = 32_767
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(_FORMULA_STARTS)
# Columns whose text comes from producers; the others are timestamps, enums, dotted
# action names, paths (which start with /), ids and hashes that validation already shapes.
_FREE_TEXT_COLUMNS = (1, 3, 4, 6, 8, 9, 12)
_INDEX_COLUMN = COLUMNS.index("Index")
_EPOCH = datetime(1970, 1, 1)

Progress = Callable[[int], None]


def neutralise(cell: str) -> str:
    """A cell that spreadsheets will not run as a formula (OWASP CSV injection)."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def _row(stored: StoredDoc) -> tuple[dict[str, Any], list[Any]]:
    doc = orjson.loads(stored.doc)
    actor = doc["actor"]
    resource = doc["resource"] or {}
    request = doc["request"] or {}
    return doc, [
        doc["occurred_at"], doc["event_type"], doc["category"],
        actor["email"] or actor["name"] or actor["id"] or "", actor["id"] or "", doc["action"],
        doc["description"], doc["result"], resource.get("type") or "",
        resource.get("id") or "", request.get("method") or "", request.get("path") or "",
        doc["context"]["ip"] or "", doc["id"], doc["org_id"], doc["index"],
        stored.leaf_hash.hex(),
    ]


def plain_csv_line(fields: list[str]) -> str | None:
    """fields joined as csv.writer would write them (line end aside) when none needs
    quoting, which is nearly always; None when one holds a comma, quote or line break."""
    line = ",".join(fields)
    if line.count(",") != len(fields) - 1 or '"' in line or "\n" in line or "\r" in line:
        return None
    return line


def write_csv(path: Path, docs: Iterable[StoredDoc], progress: Progress | None = None) -> int:
    """UTF-8 with BOM, RFC 4180 quoting, a header row; returns the number of rows."""
    # Rows that need no quoting are joined directly and written a thousand at a time;
    # the others go through csv.writer.
    risky = _FORMULA_FIRST
    plain = plain_csv_line
    count = 0
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        lines: list[str] = []

        def flush() -> None:
            if lines:
                lines.append("")  # so the join ends the last line too
                f.write("\r\n".join(lines))
                lines.clear()

        for stored in docs:
            _, row = _row(stored)
            row[_INDEX_COLUMN] = str(row[_INDEX_COLUMN])
            for col in _FREE_TEXT_COLUMNS:
                cell = row[col]
                if cell and cell[0] in risky:
                    row[col] = "'" + cell
            line = plain(row)
            if line is None:
                flush()
                writer.writerow(row)
            else:
                lines.append(line)
            count += 1
            if not count % 1000:
                flush()
                if progress is not None and not count % 5000:
                    progress(count)
        flush()
    return count


def _json_cell(value: Any) -> str:
    if value is None:
        return ""
    text = orjson.dumps(value).decode()
    if len(text) > EXCEL_CELL_LIMIT:
        marker = f"…[cut: {len(text):,} characters, Excel holds {EXCEL_CELL_LIMIT:,}]"
        text = text[: EXCEL_CELL_LIMIT - len(marker)] + marker
    return text


def write_xlsx(path: Path, docs: Iterable[StoredDoc], *, total: int,
               progress: Progress | None = None) -> int:
    """A real workbook in constant memory: bold frozen header, autofilter, widths, date
    cells, a new sheet every 1,048,575 rows (the first sheet says how many there are)."""
    import xlsxwriter

    sheets = max(1, -(-total // EXCEL_ROWS_PER_SHEET))
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False,
                                           "strings_to_formulas": False,
                                           "strings_to_urls": False})
    bold = book.add_format({"bold": True, "bg_color": "#EEF2F7", "bottom": 1})
    when = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss.000"})
    headers = COLUMNS + EXCEL_EXTRA_COLUMNS
    widths = [24, 20, 18, 30, 14, 26, 48, 10, 14, 16, 8, 40, 15, 38, 16, 9, 66, 60, 60]
    sheet = None
    row_in_sheet = 0
    count = 0

    def new_sheet(number: int) -> Any:
        ws = book.add_worksheet(f"Events {number}" if sheets > 1 else "Events")
        for col, (title, width) in enumerate(zip(headers, widths, strict=True)):
            ws.set_column(col, col, width)
            ws.write_string(0, col, title, bold)
        if number == 1:
            note = (f"This export has {sheets} sheets (Excel holds {EXCEL_ROWS_PER_SHEET:,} "
                    "rows a sheet)" if sheets > 1 else "This export has 1 sheet")
            ws.write_string(0, len(headers) + 1, note)
        ws.freeze_panes(1, 0)
        return ws

    def finish(ws: Any, rows: int) -> None:
        ws.autofilter(0, 0, max(rows, 1), len(headers) - 1)

    for stored in docs:
        if sheet is None or row_in_sheet == EXCEL_ROWS_PER_SHEET:
            if sheet is not None:
                finish(sheet, row_in_sheet)
            sheet = new_sheet(count // EXCEL_ROWS_PER_SHEET + 1)
            row_in_sheet = 0
        doc, row = _row(stored)
        row_in_sheet += 1
        # The stored time, not its text re-parsed: events sealed before the parser took
        # ASCII digits only may show others'.
        at = _EPOCH + timedelta(microseconds=stored.occurred_us)
        sheet.write_datetime(row_in_sheet, 0, at, when)
        for col in range(1, 15):
            if row[col]:
                sheet.write_string(row_in_sheet, col, row[col])
        sheet.write_number(row_in_sheet, 15, row[15])
        sheet.write_string(row_in_sheet, 16, row[16])
        request = doc["request"] or {}
        for col, key in ((17, "body"), (18, "response")):
            cell = _json_cell(request.get(key))
            if cell:
                sheet.write_string(row_in_sheet, col, cell)
        count += 1
        if progress is not None and count % 5000 == 0:
            progress(count)
    if sheet is None:
        sheet = new_sheet(1)
    finish(sheet, row_in_sheet)
    book.close()
    return count

