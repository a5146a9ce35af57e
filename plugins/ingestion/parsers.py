"""Documents to structured text: pure functions from bytes to `Block`s (text, page, heading path), no I/O.

Every parser is CPU work and runs in a worker thread (never on the event loop). A file that is not what it claims,
is damaged, or holds no text raises `ParseError` with a reason a person can act on; the job fails with it. Heavy
libraries are imported inside the parser that needs them: trafilatura for HTML's main content (navigation, scripts
and boilerplate dropped), pypdfium2 for PDF text per page, python-docx for Word headings and tables,
charset-normalizer for the encoding of text.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

FORMATS = ("txt", "md", "html", "pdf", "docx", "csv", "json")
_EXTENSIONS = {
    "txt": "txt",
    "text": "txt",
    "log": "txt",
    "md": "md",
    "markdown": "md",
    "html": "html",
    "htm": "html",
    "xhtml": "html",
    "pdf": "pdf",
    "docx": "docx",
    "csv": "csv",
    "json": "json",
}
_MEDIA_TYPES = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/csv": "csv",
    "application/json": "json",
}
# A .docx is a zip: refuse one whose members would inflate past this before python-docx reads them (a zip bomb).
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ParseError(Exception):
    """The document cannot be read as its format: the message says why (it becomes the job's error)."""


@dataclass(frozen=True)
class Block:
    """A paragraph-like piece of text in reading order, with the page it is on (PDF: from 1) and its heading path."""

    text: str
    page: int | None = None
    headings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Parsed:
    format: str
    blocks: list[Block]
    pages: int  # a PDF's pages; 1 for every other format


def detect_format(filename: str | None, content_type: str | None, data: bytes) -> str:
    """The format from the name's extension, else the declared media type, else the first bytes; ParseError when
    none of them names a supported format."""
    if filename and "." in filename:
        ext = filename.rsplit(".", 1)[1].lower()
        if ext in _EXTENSIONS:
            return _EXTENSIONS[ext]
    media = (content_type or "").split(";")[0].strip().lower()
    if media in _MEDIA_TYPES:
        return _MEDIA_TYPES[media]
    head = data[:1024].lstrip()
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"PK\x03\x04") and b"word/" in data[:65536]:
        return "docx"
    if head[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "html"
    if head[:1] in (b"{", b"[") and _json_ok(data):
        return "json"
    if media.startswith("text/") or (not media and _looks_like_text(data)):
        return "txt"
    what = f"{filename!r}" if filename else "the document"
    raise ParseError(f"{what} is not a supported format ({media or 'unknown type'}): send one of {', '.join(FORMATS)}")


def _json_ok(data: bytes) -> bool:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def _looks_like_text(data: bytes) -> bool:
    return b"\x00" not in data[:8192]


def parse(data: bytes, *, filename: str | None = None, content_type: str | None = None) -> Parsed:
    """Parse `data` (format detected as `detect_format` does). ParseError when it cannot be read or holds no text."""
    fmt = detect_format(filename, content_type, data)
    parsed = _PARSERS[fmt](data)
    if not any(b.text.strip() for b in parsed.blocks):
        raise ParseError(f"the {fmt} document holds no text to index")
    return parsed


# ---- text -----------------------------------------------------------------------------------------------------


def decode(data: bytes) -> str:
    """Text of unknown encoding: UTF-8 (with or without BOM) when it is, else charset-normalizer's best guess."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return _clean(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    results = from_bytes(data)
    best = results.best()
    if best is not None:
        # Single-byte encodings often tie on short text; the Western one is by far the most common among them.
        tied = [m for m in results if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
        best = next((m for m in tied if m.encoding == "cp1252"), best)
    if best is None or (b"\x00" in data[:8192] and not best.encoding.startswith(("utf_16", "utf_32"))):
        raise ParseError("the file is not text in any encoding that could be detected (is it binary?)")
    return _clean(str(best))


def _clean(text: str) -> str:
    """No NUL or other control characters (PostgreSQL text refuses NUL); line ends made `\\n`."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _paragraphs(text: str) -> Iterator[str]:
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if para:
            yield para


def parse_txt(data: bytes) -> Parsed:
    return Parsed("txt", [Block(p) for p in _paragraphs(decode(data))], 1)


def markdown_blocks(text: str) -> list[Block]:
    """Paragraphs of Markdown under their ATX heading path (`#` .. `######`); fenced code stays one block."""
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    fenced = False

    def flush() -> None:
        para = "\n".join(lines).strip()
        lines.clear()
        if para:
            blocks.append(Block(para, headings=tuple(h for _, h in path)))

    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
            lines.append(line)
            continue
        if fenced:
            lines.append(line)
            continue
        m = _HEADING.match(line)
        if m:
            flush()
            level, title = len(m.group(1)), m.group(2).strip()
            path = [(lv, h) for lv, h in path if lv < level] + [(level, title)]
            continue
        if not line.strip():
            flush()
            continue
        lines.append(line)
    flush()
    return blocks


def parse_md(data: bytes) -> Parsed:
    return Parsed("md", markdown_blocks(decode(data)), 1)


def parse_html(data: bytes) -> Parsed:
    """The page's main content (trafilatura: navigation, scripts, styles and boilerplate dropped), headings kept."""
    import trafilatura

    html = decode(data)
    try:
        text = trafilatura.extract(
            html,
            output_format="markdown",
            include_formatting=True,
            include_comments=False,
            include_tables=True,
            include_images=False,
            include_links=False,
            favor_recall=True,
        )
    except Exception as exc:  # lxml's errors on hostile markup
        raise ParseError(f"the HTML could not be parsed: {type(exc).__name__}") from None
    if not text:
        raise ParseError("the HTML page has no main content to index")
    return Parsed("html", markdown_blocks(_clean(text)), 1)


# ---- pdf ------------------------------------------------------------------------------------------------------


def parse_pdf(data: bytes) -> Parsed:
    """Text per page (pypdfium2), pages numbered from 1; an encrypted or damaged file is a ParseError."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise ParseError(f"the PDF cannot be opened ({exc}): is it damaged or password-protected?") from None
    try:
        blocks: list[Block] = []
        pages = len(pdf)
        for index in range(pages):
            page = pdf[index]
            try:
                textpage = page.get_textpage()
                try:
                    text = _clean(textpage.get_text_range())
                finally:
                    textpage.close()
            finally:
                page.close()
            blocks += [Block(p, page=index + 1) for p in _pdf_paragraphs(text)]
    except pdfium.PdfiumError as exc:
        raise ParseError(f"the PDF is damaged: {exc}") from None
    finally:
        pdf.close()
    return Parsed("pdf", blocks, pages)


def _pdf_paragraphs(text: str) -> Iterator[str]:
    """PDF text has a line break per printed line: a blank line (or none at all) separates paragraphs."""
    for para in _paragraphs(text):
        yield re.sub(r"\s*\n\s*", " ", para)


# ---- docx -----------------------------------------------------------------------------------------------------


def _check_zip(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            total = sum(i.file_size for i in zf.infolist())
            names = set(zf.namelist())
    except zipfile.BadZipFile:
        raise ParseError("the .docx file is damaged (not a valid zip archive)") from None
    if "word/document.xml" not in names:
        raise ParseError("the file is not a Word document (.docx): it has no word/document.xml")
    if total > MAX_UNZIPPED_BYTES:
        raise ParseError(f"the .docx file inflates to {total:,} bytes, over the limit of {MAX_UNZIPPED_BYTES:,}")


def _heading_level(style: str) -> int | None:
    if style == "Title":
        return 0
    m = re.match(r"Heading (\d)$", style)
    return int(m.group(1)) if m else None


def parse_docx(data: bytes) -> Parsed:
    """Paragraphs and tables in reading order under their heading path (styles Title, Heading 1..9)."""
    _check_zip(data)
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        items = list(document.iter_inner_content())
    except Exception as exc:  # python-docx raises lxml, KeyError and its own errors on a damaged part
        raise ParseError(f"the .docx file cannot be read: {type(exc).__name__}") from None
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []
    for item in items:
        if isinstance(item, Table):
            rows = [" | ".join(c.text.strip() for c in row.cells) for row in item.rows]
            text = _clean("\n".join(r for r in rows if r.strip(" |")))
            if text:
                blocks.append(Block(text, headings=tuple(h for _, h in path)))
            continue
        text = _clean(item.text).strip()
        if not text:
            continue
        level = _heading_level(item.style.name if item.style is not None else "")
        if level is not None:
            path = [(lv, h) for lv, h in path if lv < level] + [(level, text)]
            continue
        blocks.append(Block(text, headings=tuple(h for _, h in path)))
    return Parsed("docx", blocks, 1)


# ---- csv and json ---------------------------------------------------------------------------------------------


def parse_csv(data: bytes) -> Parsed:
    """One block per row, `column: value` per cell (the first row names the columns)."""
    text = decode(data)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise ParseError(f"the CSV cannot be read: {exc}") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise ParseError("the CSV has no rows")
    header, body = rows[0], rows[1:] or [rows[0]]
    blocks = []
    for row in body:
        cells = [
            f"{header[i].strip() if i < len(header) and header[i].strip() else f'column {i + 1}'}: {v.strip()}"
            for i, v in enumerate(row)
            if v.strip()
        ]
        if cells:
            blocks.append(Block("\n".join(cells)))
    return Parsed("csv", blocks, 1)


def _flatten(value: Any, prefix: str, out: list[str], depth: int = 0) -> None:
    if depth > 64:
        raise ParseError("the JSON nests deeper than 64 levels")
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}[{i}]", out, depth + 1)
    elif value is not None and str(value).strip():
        out.append(f"{prefix}: {value}" if prefix else str(value))


def parse_json(data: bytes) -> Parsed:
    """An array: one block per item; an object: one block per top-level key (the key as its heading). Values are
    written as `path.to.key: value` lines, so a field's name stays next to its value."""
    try:
        value = orjson.loads(decode(data))
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"the JSON is not valid: {exc}") from None
    items: list[tuple[tuple[str, ...], Any]]
    if isinstance(value, list):
        items = [((), v) for v in value]
    elif isinstance(value, dict):
        items = [((str(k),), v) for k, v in value.items()]
    else:
        items = [((), value)]
    blocks = []
    for headings, item in items:
        lines: list[str] = []
        _flatten(item, "", lines)
        if lines:
            blocks.append(Block(_clean("\n".join(lines)), headings=headings))
    return Parsed("json", blocks, 1)


_PARSERS: dict[str, Callable[[bytes], Parsed]] = {
    "txt": parse_txt,
    "md": parse_md,
    "html": parse_html,
    "pdf": parse_pdf,
    "docx": parse_docx,
    "csv": parse_csv,
    "json": parse_json,
}
