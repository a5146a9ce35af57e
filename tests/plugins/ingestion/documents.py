"""Small documents of every format, made by the tests themselves (no fixtures on disk, nothing downloaded)."""

from __future__ import annotations

import io
import zlib


def pdf(pages: list[str]) -> bytes:
    """A valid PDF with one page of Helvetica text per item (lines split on newlines), written by hand."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in below
    tree = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    for text in pages:
        lines = []
        for i, line in enumerate(text.split("\n")):
            esc = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            lines.append(f"BT /F1 11 Tf 50 {750 - 14 * i} Td ({esc}) Tj ET".encode("latin-1"))
        stream = zlib.compress(b"\n".join(lines))
        content = add(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 %d 0 R >> >> "
                b"/Contents %d 0 R >>" % (tree, font, content)
            )
        )
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % tree
    objects[tree - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref))
    return out.getvalue()


def docx(items: list[tuple[str, str]]) -> bytes:
    """A Word document: (style, text) items, style `h1`..`h3`, `p`, or `table:a|b;c|d`."""
    import docx as python_docx

    document = python_docx.Document()
    for style, text in items:
        if style.startswith("h"):
            document.add_heading(text, level=int(style[1:]))
        elif style == "table":
            rows = [r.split("|") for r in text.split(";")]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for i, row in enumerate(rows):
                for j, cell in enumerate(row):
                    table.cell(i, j).text = cell
        else:
            document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


HTML = b"""<!doctype html><html><head><title>Owls</title><style>.x{color:red}</style>
<script>var tracking = "SCRIPTSECRET";</script></head><body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/shop">Shop NAVLINK</a></li></ul></nav>
<article><h1>Owls of the night</h1>
<p>Owls are nocturnal birds of prey. They hunt small mammals at night with silent flight and keen hearing that
lets them find a mouse under snow.</p>
<h2>Pellets</h2>
<p>Owls swallow their prey whole and later cough up pellets of bones and fur, which scientists study to learn
what the owls have eaten.</p></article>
<footer>Copyright FOOTERTEXT 2026. All rights reserved.</footer></body></html>"""

MARKDOWN = b"""# Sharks

Sharks are fish with a skeleton of cartilage instead of bone.

## Senses

Sharks sense electric fields with the ampullae of Lorenzini, small pores around the snout.

## Teeth

A shark loses and replaces thousands of teeth in its lifetime.
"""

CSV = "city,country,population\nParis,France,2100000\nLyon,France,520000\nZürich,Switzerland,420000\n"

JSON = (
    b'[{"name": "kiwi", "kind": "bird", "note": "flightless bird of New Zealand"}, '
    b'{"name": "emu", "kind": "bird", "note": "tall flightless bird of Australia"}]'
)
