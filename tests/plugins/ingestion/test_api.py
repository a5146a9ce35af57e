"""Uploads and URLs in, chunks out, through the HTTP API in both modes: every format, page numbers reaching
citations, corrupt files, idempotence, replacement, the list route and tenant isolation."""

from __future__ import annotations

import asyncpg

from app.db import plain_url
from tests.conftest import Deployer
from tests.plugins.ingestion.conftest import RAG, URL, chunks, finished, ingested, new_collection, upload
from tests.plugins.ingestion.documents import CSV, HTML, JSON, MARKDOWN, docx, pdf


async def test_a_pdf_keeps_its_page_numbers_up_to_the_citations(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        _, api = await d.api()
        coll = await new_collection(api, chunking={"size": 40, "overlap": 0.1})
        data = pdf(
            ["Introduction to the field guide.", "Owls hunt at night with silent flight.", "Sharks have cartilage."]
        )
        job = await ingested(api, "docs", "guide.pdf", data)
        result = job["result"]
        assert result["format"] == "pdf" and result["pages"] == 3 and result["chunk_count"] == 3
        found = await chunks(api, coll["id"], result["document_id"])
        assert [c["page"] for c in found] == [1, 2, 3]
        assert "silent flight" in found[1]["text"]
        r = await api.post(f"{RAG}/{coll['id']}/answer", json={"query": "owls silent flight", "top_k": 1})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["passages"][0]["page"] == 2
        assert answer["citations"] and answer["citations"][0]["page"] == 2


LATIN1 = (
    "Le café de la gare ouvre à sept heures. Les élèves y prennent un thé ou un chocolat chaud avant les cours; "
    "la propriétaire, Hélène, prépare des crêpes garnies de crème fraîche et de fraises. Où est le problème? "
    "Ça coûte très peu et c'est délicieux."
).encode("latin-1")


async def test_every_format_is_parsed_with_its_structure(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        _, api = await d.api()
        coll = (await new_collection(api))["id"]
        files = {
            "sharks.md": MARKDOWN,
            "owls.html": HTML,
            "guide.docx": docx([("h1", "Birds"), ("p", "Kiwis cannot fly."), ("h2", "Emus"), ("p", "Emus run fast.")]),
            "cities.csv": CSV.encode(),
            "birds.json": JSON,
            "cafe.txt": LATIN1,
        }
        jobs = await upload(api, coll, *files.items())
        assert [j["filename"] for j in jobs] == list(files) and all(j["status"] == "queued" for j in jobs)
        texts: dict[str, list[dict[str, object]]] = {}
        for job in jobs:
            done = await finished(api, job["id"])
            assert done["status"] == "succeeded", done
            texts[job["filename"]] = await chunks(api, coll, done["result"]["document_id"])
        md = texts["sharks.md"]
        assert {c["heading"] for c in md} == {"Sharks", "Sharks > Senses", "Sharks > Teeth"}
        assert any("ampullae of Lorenzini" in str(c["text"]) and c["heading"] == "Sharks > Senses" for c in md)
        html = " ".join(str(c["text"]) for c in texts["owls.html"])
        assert "nocturnal birds of prey" in html and "pellets" in html
        assert not any(junk in html for junk in ("NAVLINK", "SCRIPTSECRET", "FOOTERTEXT", "color:red"))
        assert {c["heading"] for c in texts["owls.html"]} == {"Owls of the night", "Owls of the night > Pellets"}
        assert [(c["heading"], c["text"]) for c in texts["guide.docx"]] == [
            ("Birds", "Kiwis cannot fly."),
            ("Birds > Emus", "Emus run fast."),
        ]
        assert "city: Zürich\ncountry: Switzerland" in str(texts["cities.csv"][0]["text"])
        assert "name: kiwi" in str(texts["birds.json"][0]["text"])
        assert "Le café de la gare" in str(texts["cafe.txt"][0]["text"]) and "Hélène" in str(
            texts["cafe.txt"][0]["text"]
        )
        hits = (await api.post(f"{RAG}/{coll}/search", json={"query": "electric fields snout pores"})).json()["hits"]
        assert hits[0]["metadata"]["source"] == "sharks.md" and hits[0]["heading"] == "Sharks > Senses"


async def test_a_corrupt_or_unsupported_file_fails_its_job_with_a_reason(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        _, api = await d.api()
        coll = (await new_collection(api))["id"]
        bad = {
            "report.pdf": b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage without xref",
            "letter.docx": b"PK\x03\x04 this is not really a zip archive",
            "photo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" + bytes(200),
            "empty.html": b"<html><body><script>x()</script><style>a{}</style></body></html>",
            "broken.json": b'{"a": [1, 2',
        }
        jobs = await upload(api, coll, *bad.items(), ("fine.md", MARKDOWN))
        reasons = {}
        for job in jobs:
            done = await finished(api, job["id"])
            reasons[job["filename"]] = (done["status"], done["error"])
        assert reasons["fine.md"] == ("succeeded", None)
        for name in bad:
            assert reasons[name][0] == "failed", (name, reasons[name])
        assert "PDF" in reasons["report.pdf"][1] and "damaged" in reasons["report.pdf"][1]
        assert "zip" in reasons["letter.docx"][1]
        assert "not a supported format" in reasons["photo.png"][1]
        assert "no main content" in reasons["empty.html"][1]
        assert "JSON is not valid" in reasons["broken.json"][1]
        failed = (await api.get(URL, params={"status": "failed", "collection": "docs"})).json()["data"]
        assert sorted(j["filename"] for j in failed) == sorted(bad)


async def test_same_content_is_not_ingested_twice_and_a_changed_source_replaces_its_document(
    deploy_app: Deployer, database_url: str
) -> None:
    async with deploy_app() as d:
        _, api = await d.api()
        coll = (await new_collection(api, chunking={"size": 16, "overlap": 0.0}))["id"]
        v1 = "\n\n".join(f"Paragraph {i} tells about the first edition of the handbook." for i in range(150))
        first = await ingested(api, "docs", "handbook.md", v1.encode())
        assert first["result"]["chunk_count"] == 150 and first["result"]["parts"] == 2
        doc = first["result"]["document_id"]
        # The upload's bytes were stored until the document was; then only their hash and size stay.
        conn = await asyncpg.connect(plain_url(database_url))
        try:
            row = await conn.fetchrow(
                "SELECT content, sha256, size FROM ingestion_sources WHERE job_id = $1", first["id"]
            )
        finally:
            await conn.close()
        assert row["content"] is None and row["sha256"] == first["result"]["sha256"] and row["size"] == len(v1.encode())
        # The same bytes again, under the same name or another: the job that has them answers.
        [again] = await upload(api, coll, ("handbook.md", v1.encode()))
        [renamed] = await upload(api, coll, ("copy.md", v1.encode()))
        assert again["duplicate"] and renamed["duplicate"] and again["id"] == renamed["id"] == first["id"]
        listed = (await api.get(f"{RAG}/{coll}/documents", params={"limit": 100})).json()["data"]
        assert sorted(x["id"] for x in listed) == sorted([doc, f"{doc}~1"])
        # A changed handbook replaces the old one, parts included.
        v2 = "The second edition is short: one paragraph about the revised handbook."
        second = await ingested(api, "docs", "handbook.md", v2.encode())
        assert second["result"]["document_id"] == doc and second["result"]["chunk_count"] == 1
        listed = (await api.get(f"{RAG}/{coll}/documents")).json()["data"]
        assert [x["id"] for x in listed] == [doc]
        assert [c["text"] for c in await chunks(api, coll, doc)] == [v2]
        info = (await api.get(f"{RAG}/{coll}")).json()
        assert info["document_count"] == 1 and info["chunk_count"] == 1
        # Once the document is deleted from the collection, the same content is ingested again.
        assert (await api.delete(f"{RAG}/{coll}/documents/{doc}")).status_code == 204
        [fresh] = await upload(api, coll, ("handbook.md", v2.encode()))
        assert not fresh["duplicate"] and fresh["id"] != second["id"]
        assert (await finished(api, fresh["id"]))["result"]["chunk_count"] == 1


async def test_jobs_are_listed_per_tenant_and_collection(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        _, api = await d.api()
        a = (await new_collection(api, "a"))["id"]
        await new_collection(api, "b")
        [ja] = await upload(api, a, ("one.md", b"# One\n\nFirst document."))
        [jb] = await upload(api, "b", ("two.md", b"# Two\n\nSecond document."))
        await finished(api, ja["id"])
        await finished(api, jb["id"])
        everything = (await api.get(URL)).json()["data"]
        assert [j["id"] for j in everything] == [jb["id"], ja["id"]]
        only_a = (await api.get(URL, params={"collection": "a"})).json()["data"]
        assert [(j["id"], j["filename"], j["status"]) for j in only_a] == [(ja["id"], "one.md", "succeeded")]
        assert only_a[0]["result"]["chunk_count"] == 1 and only_a[0]["sha256"]
        page = (await api.get(URL, params={"limit": 1})).json()
        assert len(page["data"]) == 1 and page["next_cursor"]
        rest = (await api.get(URL, params={"limit": 1, "cursor": page["next_cursor"]})).json()
        assert [j["id"] for j in rest["data"]] == [ja["id"]]
        assert (await api.get(URL, params={"status": "failed"})).json()["data"] == []
        # Another tenant sees none of it, and cannot reach the collection by id or name.
        _, other = await d.api()
        assert (await other.get(URL)).json()["data"] == []
        assert (await other.get(f"/api/v1/jobs/{ja['id']}")).status_code == 404
        assert (await other.get(URL, params={"collection": a})).status_code == 404
        r = await other.post(URL, data={"collection": a}, files=[("file", ("x.md", b"hello"))])
        assert r.status_code == 404, r.text
        r = await other.post(URL, json={"url": "https://example.com/x", "collection": "a"})
        assert r.status_code == 404, r.text


async def test_uploads_are_bounded_and_file_names_are_labels(deploy_app: Deployer) -> None:
    async with deploy_app(env={"FAAS_INGESTION_MAX_UPLOAD_BYTES": "2000", "FAAS_INGESTION_MAX_FILES": "2"}) as d:
        _, api = await d.api()
        coll = (await new_collection(api))["id"]
        r = await api.post(URL, data={"collection": coll}, files=[("file", ("big.txt", b"word " * 500))])
        assert r.status_code == 413 and "FAAS_INGESTION_MAX_UPLOAD_BYTES" in r.json()["detail"]
        r = await api.post(URL, data={"collection": coll}, files=[("file", (f"{i}.txt", b"x")) for i in range(3)])
        assert r.status_code == 413 and "FAAS_INGESTION_MAX_FILES" in r.json()["detail"]
        r = await api.post(URL, data={"collection": coll}, files=[("file", ("e.txt", b""))])
        assert r.status_code == 422 and "empty" in r.json()["detail"]
        r = await api.post(URL, files=[("collection", (None, coll))])  # multipart with no file part
        assert r.status_code == 422 and "at least one file" in r.json()["detail"]
        r = await api.post(URL, data={"collection": coll})  # a urlencoded form is not an upload
        assert r.status_code == 415
        r = await api.post(URL, content=b"x", headers={"content-type": "text/plain"})
        assert r.status_code == 415
        assert (await api.get(URL)).json()["data"] == []  # nothing refused was stored
        [job] = await upload(api, coll, ("..\\..\\etc/../passwd.md", b"# Secret\n\nNot a path."))
        assert job["filename"] == "passwd.md"
        done = await finished(api, job["id"])
        assert done["status"] == "succeeded"
