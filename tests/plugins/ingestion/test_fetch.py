"""The SSRF guard of URL jobs: every address form refused after resolution, a name mapped to loopback refused,
redirects re-checked, the connection pinned to the checked address, size and time caps. Real servers on 127.0.0.1
only; names are mapped by the guard's injectable resolver (FAAS_INGESTION_FETCH_HOSTS), never looked up."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from plugins.ingestion.fetch import FetchPolicy, FetchRefused, check_url, fetch, system_resolver
from tests.conftest import Deployer
from tests.plugins.ingestion.conftest import URL, chunks, finished, new_collection
from tests.plugins.ingestion.documents import HTML
from tests.servers import serve_in_thread

POLICY = FetchPolicy(max_bytes=10_000, timeout_seconds=2.0, max_redirects=3)
LOOPBACK_OK = FetchPolicy(max_bytes=10_000, timeout_seconds=2.0, max_redirects=3, allow_loopback=True)

REFUSED_LITERALS = [
    "http://127.0.0.1/",
    "http://2130706433/",  # decimal
    "http://0177.0.0.1/",  # octal
    "http://0x7f.0.0.1/",  # hex
    "http://127.1/",  # short form
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:a00:1]/",  # IPv4-mapped 10.0.0.1, hex words
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://[2002:c0a8:101::]/",  # 6to4 of 192.168.1.1
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://100.64.0.1/",  # CGNAT
    "http://100.100.100.200/",  # a metadata service inside CGNAT
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",  # a metadata service on a unique local address
    "http://0.0.0.0/",
    "http://0/",
    "http://224.0.0.1/",
    "https://240.0.0.1/",
]


@pytest.mark.parametrize("url", REFUSED_LITERALS)
async def test_every_form_of_a_private_address_is_refused(url: str) -> None:
    with pytest.raises(FetchRefused, match="resolves to"):
        await check_url(url, system_resolver(), POLICY)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://x/", "http://user:secret@example.com/", "http:///x"]
)
async def test_other_schemes_credentials_and_no_host_are_refused(url: str) -> None:
    with pytest.raises(FetchRefused):
        await check_url(url, system_resolver(), POLICY)


async def test_a_name_is_checked_after_resolution_every_address_of_it() -> None:
    resolver = system_resolver({"internal.test": "127.0.0.1", "intranet.test": "10.1.2.3", "ok.test": "93.184.215.14"})
    for name in ("internal.test", "intranet.test"):
        with pytest.raises(FetchRefused, match=f"the host '{name}' resolves to"):
            await check_url(f"https://{name}/doc", resolver, POLICY)
    url, address = await check_url("https://ok.test/doc", resolver, POLICY)
    assert address == "93.184.215.14" and url.host == "ok.test"

    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "192.168.0.7"]  # one public, one private answer: refused

    with pytest.raises(FetchRefused, match=r"192\.168\.0\.7"):
        await check_url("https://mixed.test/", mixed, POLICY)


@pytest.fixture(scope="module")
def site() -> Iterator[dict[str, Any]]:
    """A site on 127.0.0.1 that records each request's Host header."""
    seen: list[str] = []

    async def page(request: Request) -> Response:
        seen.append(request.headers["host"])
        return Response(HTML, media_type="text/html; charset=utf-8")

    async def to_private(request: Request) -> Response:
        return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=302)

    async def to_page(request: Request) -> Response:
        return RedirectResponse("/page", status_code=301)

    async def loop(request: Request) -> Response:
        return RedirectResponse("/loop", status_code=302)

    async def big(request: Request) -> Response:
        return PlainTextResponse("word " * 10_000)

    async def slow(request: Request) -> Response:
        await asyncio.sleep(5)
        return PlainTextResponse("late")

    async def missing(request: Request) -> Response:
        return PlainTextResponse("no", status_code=404)

    app = Starlette(
        routes=[
            Route("/page", page),
            Route("/to-private", to_private),
            Route("/to-page", to_page),
            Route("/loop", loop),
            Route("/big", big),
            Route("/slow", slow),
            Route("/missing", missing),
        ]
    )
    with serve_in_thread(app) as url:
        yield {"url": url, "port": int(url.rsplit(":", 1)[1]), "seen": seen}


async def test_the_connection_goes_to_the_checked_address_with_the_name_as_host(site: dict[str, Any]) -> None:
    resolver = system_resolver({"docs.test": "127.0.0.1"})
    got = await fetch(f"http://docs.test:{site['port']}/to-page", resolver=resolver, policy=LOOPBACK_OK)
    assert got.data == HTML and got.url.endswith("/page") and (got.content_type or "").startswith("text/html")
    assert site["seen"][-1] == f"docs.test:{site['port']}"
    # Without the test-only loopback setting the same name is refused before any connection.
    before = len(site["seen"])
    with pytest.raises(FetchRefused, match="loopback"):
        await fetch(f"http://docs.test:{site['port']}/page", resolver=resolver, policy=POLICY)
    assert len(site["seen"]) == before


async def test_redirects_sizes_and_time_are_checked(site: dict[str, Any]) -> None:
    resolver = system_resolver()
    base = site["url"]
    with pytest.raises(FetchRefused, match=r"169\.254\.169\.254"):
        await fetch(f"{base}/to-private", resolver=resolver, policy=LOOPBACK_OK)
    with pytest.raises(FetchRefused, match="redirected more than 3 times"):
        await fetch(f"{base}/loop", resolver=resolver, policy=LOOPBACK_OK)
    with pytest.raises(FetchRefused, match="over the limit of 10,000"):
        await fetch(f"{base}/big", resolver=resolver, policy=LOOPBACK_OK)
    with pytest.raises(FetchRefused, match="within 2 s"):
        await fetch(f"{base}/slow", resolver=resolver, policy=LOOPBACK_OK)
    with pytest.raises(FetchRefused, match="HTTP 404"):
        await fetch(f"{base}/missing", resolver=resolver, policy=LOOPBACK_OK)


async def test_a_url_job_fetches_parses_and_indexes_a_page(deploy_app: Deployer, site: dict[str, Any]) -> None:
    env = {"FAAS_INGESTION_FETCH_HOSTS": "docs.test=127.0.0.1", "FAAS_INGESTION_FETCH_ALLOW_LOOPBACK": "on"}
    async with deploy_app(env=env) as d:
        _, api = await d.api()
        coll = (await new_collection(api))["id"]
        url = f"http://docs.test:{site['port']}/to-page"
        r = await api.post(URL, json={"url": url, "collection": "docs"})
        assert r.status_code == 202, r.text
        [job] = r.json()["jobs"]
        assert job["url"] == url and job["filename"] is None
        done = await finished(api, job["id"])
        assert done["status"] == "succeeded", done
        found = await chunks(api, coll, done["result"]["document_id"])
        assert any("nocturnal birds of prey" in c["text"] for c in found)
        assert not any("NAVLINK" in c["text"] for c in found)
        # The same URL again: the page is unchanged, so nothing is written twice.
        r = await api.post(URL, json={"url": url, "collection": coll})
        again = await finished(api, r.json()["jobs"][0]["id"])
        assert again["result"]["unchanged"] is True and again["result"]["document_id"] == done["result"]["document_id"]
        assert (await api.get(f"/api/v1/rag/collections/{coll}")).json()["chunk_count"] == len(found)


async def test_a_url_to_a_private_address_is_refused(deploy_app: Deployer, site: dict[str, Any]) -> None:
    async with deploy_app(env={"FAAS_INGESTION_FETCH_HOSTS": "docs.test=127.0.0.1"}) as d:
        _, api = await d.api()
        await new_collection(api)
        # Written in the URL: refused at once.
        r = await api.post(URL, json={"url": "http://[::ffff:169.254.169.254]/", "collection": "docs"})
        assert r.status_code == 422 and "169.254.169.254" in r.json()["detail"]
        # A name that resolves to loopback: its job fails with the reason, and the site never sees a request.
        before = len(site["seen"])
        r = await api.post(URL, json={"url": f"http://docs.test:{site['port']}/page", "collection": "docs"})
        assert r.status_code == 202, r.text
        done = await finished(api, r.json()["jobs"][0]["id"])
        assert done["status"] == "failed" and "loopback" in done["error"], done
        assert len(site["seen"]) == before
