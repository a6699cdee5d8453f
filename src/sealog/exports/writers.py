"""Export writers: CSV, Excel and the verifiable JSON Lines bundle, streaming, oldest first."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
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
# A spreadsheet runs a cell that begins with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A cell may be cut into pieces, each read as a cell, at any separator a spreadsheet
# offers (comma, semicolon, tab, space; the pipe is common too) and, once the quoting is
# misread under another separator, at a line break; a double quote may open a piece
# too. So "'" goes before each of _FORMULA_STARTS that follows one of those (or begins
# the cell: text is matched with a joiner before it). The pattern begins with the rare
# characters, not the separators, for speed.
_PIECE_START = re.compile(r'[=+\-@\t\r](?<=[,;\t| \r\n\x00"][=+\-@\t\r])')
_JOINER = "\x00"  # stored text holds no NUL: validation refuses it
# Columns whose text producers choose; the others hold timestamps, enums, validated action
# names and methods, UUIDs, the org id, indexes and hashes, where no piece can be a formula.
_FREE_TEXT_COLUMNS = (1, 3, 4, 6, 8, 9, 11, 12)
_INDEX_COLUMN = COLUMNS.index("Index")
_EPOCH = datetime(1970, 1, 1)

Progress = Callable[[int], None]


def neutralise(cell: str) -> str:
    """cell with "'" before every piece of it that a spreadsheet could run as a formula,
    whichever separator it reads the file with (OWASP CSV injection)."""
    return _PIECE_START.sub(r"'\g<0>", _JOINER + cell)[1:]


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


def csv_line(cells: list[str], columns: Sequence[int] | None = None) -> str:
    """The row as a CSV line (line end aside), as csv.writer with QUOTE_ALL writes it,
    the cells of columns (default: all) neutralised."""
    columns = range(len(cells)) if columns is None else columns
    # All the cells in one pass; nearly always there is nothing to change.
    text = _JOINER + _JOINER.join([cells[c] for c in columns])
    if _PIECE_START.search(text):  # search alone is three times faster than sub
        cells = list(cells)
        pieces = _PIECE_START.sub(r"'\g<0>", text)[1:].split(_JOINER)
        if len(pieces) != len(columns):  # a cell held a NUL after all
            pieces = [neutralise(cells[c]) for c in columns]
        for c, cell in zip(columns, pieces, strict=True):
            cells[c] = cell
    line = '","'.join(cells)
    if line.count('"') != 2 * len(cells) - 2:  # a cell holds a quote: double it
        line = '","'.join([c.replace('"', '""') for c in cells])
    return '"' + line + '"'


def removed_notice(retained: dict[str, Any]) -> str:
    """What an export of a window reaching before the retained part of the log says: the
    older events were removed under the org's policy, not left out (eventlog.retained_from)."""
    policy = (f"retention policy of {retained['policy_days']} days"
              if retained["policy_days"] else "retention policy")
    since = f", received before {retained['received_at']}" if retained["received_at"] else ""
    return (f"Note: the events before index {retained['index']}{since}, were removed under "
            f"the organization's {policy}; this file holds the events kept.")


def write_csv(path: Path, docs: Iterable[StoredDoc], progress: Progress | None = None, *,
              notice: str | None = None) -> int:
    """UTF-8 with BOM, RFC 4180 with every field quoted, a header row, and notice (when
    given) as a line of one field after the rows; returns the number of rows."""
    count = 0
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        lines = [csv_line(COLUMNS)]
        for stored in docs:
            _, row = _row(stored)
            row[_INDEX_COLUMN] = str(row[_INDEX_COLUMN])
            lines.append(csv_line(row, _FREE_TEXT_COLUMNS))
            count += 1
            if not count % 1000:
                lines.append("")  # so the join ends the last line too
                f.write("\r\n".join(lines))
                lines.clear()
                if progress is not None and not count % 5000:
                    progress(count)
        if notice is not None:  # after the rows: tools that read the header first still do
            lines.append(csv_line([notice]))
        lines.append("")
        f.write("\r\n".join(lines))
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
               progress: Progress | None = None, notice: str | None = None) -> int:
    """A real workbook in constant memory: bold frozen header, autofilter, widths, date
    cells, a new sheet every 1,048,575 rows (the first sheet says how many there are, and
    notice, when given, beside its header)."""
    import xlsxwriter

    sheets = max(1, -(-total // EXCEL_ROWS_PER_SHEET))
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False,
                                           "strings_to_formulas": False,
                                           "strings_to_urls": False})
    bold = book.add_format({"bold": True, "bg_color": "#EEF2F7", "bottom": 1})
    when = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss.000"})
    # Text cells are never formulas (write_string); this keeps one that looks like a
    # formula text when someone edits it in Excel, as typing "'" before it would.
    as_text = book.add_format({"quote_prefix": True})
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
            if notice is not None:
                ws.write_string(0, len(headers) + 2, notice)
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
        request = doc["request"] or {}
        for col, cell in (*enumerate(row[1:15], 1), (17, _json_cell(request.get("body"))),
                          (18, _json_cell(request.get("response")))):
            if cell:
                sheet.write_string(row_in_sheet, col, cell,
                                   as_text if cell.startswith(_FORMULA_STARTS) else None)
        sheet.write_number(row_in_sheet, 15, row[15])
        sheet.write_string(row_in_sheet, 16, row[16])
        count += 1
        if progress is not None and count % 5000 == 0:
            progress(count)
    if sheet is None:
        sheet = new_sheet(1)
    finish(sheet, row_in_sheet)
    book.close()
    return count

