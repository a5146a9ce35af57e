"""`faas ingest` against a real server on 127.0.0.1: a folder uploaded, progress per job, a summary with the
failures and their reasons, and the exit status."""

from __future__ import annotations

from pathlib import Path

import httpx

from app.main import create_app
from tests.conftest import ADMIN_KEY, make_settings
from tests.plugins.ingestion.documents import MARKDOWN, pdf
from tests.servers import serve_in_thread
from tests.test_cli import base_env, run


def test_faas_ingest_uploads_a_folder_follows_the_jobs_and_reports_failures(database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "guide.pdf").write_bytes(pdf(["Owls hunt at night.", "Sharks have cartilage skeletons."]))
    (folder / "sub" / "notes.md").write_bytes(MARKDOWN)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 this is no PDF at all")
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # not a known format: a folder walk skips it
    settings = make_settings(database_url, FAAS_PLUGINS="gateway,rag,ingestion", FAAS_JOBS_WORKER="on")
    with serve_in_thread(create_app(settings)) as url:
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        tenant = httpx.post(f"{url}/api/v1/admin/tenants", json={"name": "acme"}, headers=admin).json()
        auth = {"authorization": f"Bearer {tenant['api_key']}"}
        r = httpx.post(f"{url}/api/v1/rag/collections", json={"name": "kb"}, headers=auth, timeout=30)
        assert r.status_code == 201, r.text
        env = base_env(FAAS_API_KEY=tenant["api_key"])

        done = run(["ingest", str(folder), "--collection", "kb", "--url", url], env, timeout=120)
        assert done.returncode == 1, (done.stdout, done.stderr)
        lines = done.stdout.splitlines()
        assert any("guide.pdf" in line and "100%" in line and "succeeded" in line for line in lines), done.stdout
        assert any("notes.md" in line and "succeeded" in line for line in lines), done.stdout
        assert "photo.png" not in done.stdout
        assert "2 of 3 documents ingested (0 unchanged), 3 pages, " in done.stdout
        failure = next(line for line in lines if line.startswith("failed: "))
        assert "broken.pdf" in failure and "PDF cannot be opened" in failure

        good = [str(folder / "guide.pdf"), str(folder / "sub" / "notes.md")]
        done = run(["ingest", *good, "--collection", "kb", "--url", url], env, timeout=120)
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert "2 of 2 documents ingested" in done.stdout and "0 failed" in done.stdout
        docs = httpx.get(f"{url}/api/v1/rag/collections", headers=auth).json()["data"][0]
        assert docs["document_count"] == 2  # sent twice, stored once

        done = run(["ingest", *good, "--collection", "nope", "--url", url], env, timeout=60)
        assert done.returncode == 2 and "no rag collection" in done.stderr
        done = run(["ingest", *good, "--collection", "kb", "--url", url], base_env(), timeout=60)
        assert done.returncode == 2 and "--key" in done.stderr
        done = run(["ingest", str(tmp_path / "missing"), "--collection", "kb", "--url", url], env, timeout=60)
        assert done.returncode == 2 and "no such file or folder" in done.stderr
