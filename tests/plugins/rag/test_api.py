"""RAG over HTTP: collections, documents (chunking, replace, delete), search in every mode with filters, real BM25,
dimension checks, a small collection inside a large table, and tenant isolation; each test in both modes."""

from __future__ import annotations

import math
import random

import httpx

from tests.harness import Deployment
from tests.plugins.rag.conftest import URL, add, new_collection, search

ANIMALS = [
    {
        "id": "penguin",
        "text": "Penguins are flightless seabirds that live in Antarctica and swim in icy water.",
        "metadata": {"kind": "bird", "lang": "en", "tags": ["cold", "sea"]},
    },
    {
        "id": "camel",
        "text": "Camels cross hot deserts and store fat in their humps to survive without water.",
        "metadata": {"kind": "mammal", "lang": "en", "tags": ["hot"]},
    },
    {
        "id": "owl",
        "text": "Owls hunt mice at night; their silent feathers let them fly without a sound.",
        "metadata": {"kind": "bird", "lang": "en", "tags": ["night"]},
    },
    {
        "id": "shark",
        "text": "Sharks are fish with skeletons of cartilage; some species never stop swimming.",
        "metadata": {"kind": "fish", "lang": "en", "tags": ["sea"]},
    },
    {
        "id": "loup",
        "text": "Le loup gris chasse en meute dans les forêts du nord.",
        "metadata": {"kind": "mammal", "lang": "fr", "tags": ["cold"]},
    },
]


def ids(hits: list[dict[str, object]]) -> list[object]:
    return [h["document_id"] for h in hits]


async def test_collections_are_created_listed_and_deleted(api: httpx.AsyncClient) -> None:
    created = await new_collection(api, "manuals", chunking={"size": 50, "overlap": 0.1})
    assert created["embedding_model"] == "all-MiniLM-L6-v2" and created["dimensions"] == 384
    assert created["chunking"] == {"size": 50, "overlap": 0.1}
    assert created["document_count"] == 0 and created["chunk_count"] == 0
    assert (await api.post(URL, json={"name": "manuals"})).status_code == 409
    others = [await new_collection(api, f"c{i}") for i in range(3)]
    page = (await api.get(URL, params={"limit": 2})).json()
    assert len(page["data"]) == 2 and page["next_cursor"]
    rest = (await api.get(URL, params={"limit": 2, "cursor": page["next_cursor"]})).json()
    listed = {c["id"] for c in page["data"] + rest["data"]}
    assert listed == {created["id"], *(c["id"] for c in others)} and rest["next_cursor"] is None
    assert (await api.get(f"{URL}/{created['id']}")).json()["name"] == "manuals"
    assert (await api.delete(f"{URL}/{created['id']}")).status_code == 204
    assert (await api.get(f"{URL}/{created['id']}")).status_code == 404
    assert (await api.post(f"{URL}/{created['id']}/search", json={"query": "x"})).status_code == 404
    # An embedding model the gateway does not have is refused, not stored.
    r = await api.post(URL, json={"name": "bad", "embedding_model": "no-such-model"})
    assert r.status_code == 404 and "no-such-model" in r.text, r.text
    r = await api.post(URL, json={"name": "bad", "chunking": {"size": 20, "overlap": 0.6}})
    assert r.status_code == 422
    assert "bad" not in [c["name"] for c in (await api.get(URL)).json()["data"]]


async def test_every_mode_finds_the_document_and_filters_hold(api: httpx.AsyncClient) -> None:
    coll = (await new_collection(api))["id"]
    added = await add(api, coll, ANIMALS)
    assert added["document_ids"] == [a["id"] for a in ANIMALS]
    assert added["chunk_count"] == 5 and added["searchable"] is True
    for mode in ("keyword", "dense", "hybrid"):
        hits = await search(api, coll, "which seabirds live in Antarctica", mode=mode, top_k=3)
        assert ids(hits)[0] == "penguin", (mode, hits)
        assert hits[0]["metadata"]["kind"] == "bird" and "Antarctica" in hits[0]["text"]
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True)
    # Keyword search finds only chunks that hold a query term; dense ranks everything.
    assert ids(await search(api, coll, "cartilage", mode="keyword")) == ["shark"]
    assert len(await search(api, coll, "cartilage", mode="dense", top_k=10)) == 5
    assert await search(api, coll, "the and of", mode="keyword") == []  # stop words only
    for mode in ("keyword", "dense", "hybrid"):
        birds = await search(api, coll, "animals that swim in the sea", mode=mode, filters={"kind": "bird"})
        assert set(ids(birds)) <= {"penguin", "owl"} and "penguin" in ids(birds), mode
        sea = await search(api, coll, "animals", mode=mode, filters={"tags": "sea"}, top_k=10)
        assert set(ids(sea)) == ({"penguin", "shark"} if mode != "keyword" else set()), mode
        anyof = await search(api, coll, "water", mode=mode, filters={"kind": {"any": ["fish", "mammal"]}}, top_k=10)
        assert set(ids(anyof)) <= {"camel", "shark", "loup"} and ids(anyof), mode
        both = await search(api, coll, "cold", mode=mode, filters={"tags": "cold", "lang": "fr"}, top_k=10)
        assert ids(both) == (["loup"] if mode != "keyword" else []), mode


async def test_keyword_scores_are_bm25(api: httpx.AsyncClient) -> None:
    coll = (await new_collection(api))["id"]
    await add(
        api,
        coll,
        [
            {"id": "d1", "text": "zebra giraffe"},
            {"id": "d2", "text": "zebra zebra lion tiger"},
            {"id": "d3", "text": "lion"},
        ],
    )
    hits = await search(api, coll, "zebra", mode="keyword")
    n, df, avgdl = 3, 2, 7 / 3
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))

    def bm25(tf: int, length: int) -> float:
        return idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * length / avgdl))

    assert ids(hits) == ["d2", "d1"]
    assert math.isclose(hits[0]["score"], bm25(2, 4), rel_tol=1e-6)
    assert math.isclose(hits[1]["score"], bm25(1, 2), rel_tol=1e-6)
    # A rarer term weighs more: "giraffe" (df 1) outscores "lion" (df 2) in a two-term query.
    top = await search(api, coll, "giraffe lion", mode="keyword")
    assert ids(top)[0] == "d1"
    # A long document moves the average length far: every chunk is weighted again with the new one.
    await add(api, coll, [{"id": "d4", "text": "zebra " + " ".join(f"filler{i}" for i in range(19))}])
    n, df, avgdl = 4, 3, 27 / 4
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    hits = await search(api, coll, "zebra", mode="keyword")
    assert ids(hits) == ["d2", "d1", "d4"]
    for hit, (tf, length) in zip(hits, [(2, 4), (1, 2), (1, 20)], strict=True):
        assert math.isclose(hit["score"], bm25(tf, length), rel_tol=1e-6), hit
    # Deleting a document takes its terms out of N and the frequencies at once (the average length moved by less
    # than the re-weighting threshold, 23/3 against 27/4, so the chunk weights keep 27/4).
    assert (await api.delete(f"{URL}/{coll}/documents/d2")).status_code == 204
    n, df = 3, 2
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    hits = await search(api, coll, "zebra", mode="keyword")
    assert ids(hits) == ["d1", "d4"] and math.isclose(hits[0]["score"], bm25(1, 2), rel_tol=1e-6)


async def test_hybrid_fuses_the_two_rankings_by_score_or_by_rank(api: httpx.AsyncClient) -> None:
    coll = (await new_collection(api))["id"]
    await add(api, coll, ANIMALS)
    query = "birds that swim in the sea"
    keyword = {h["document_id"]: h["score"] for h in await search(api, coll, query, mode="keyword", top_k=50)}
    dense = {h["document_id"]: h["score"] for h in await search(api, coll, query, mode="dense", top_k=50)}
    assert len(keyword) >= 2 and len(dense) == len(ANIMALS)

    def scaled(scores: dict[object, float]) -> dict[object, float]:
        lo, hi = min(scores.values()), max(scores.values())
        return {d: (v - lo) / (hi - lo) if hi > lo else 1.0 for d, v in scores.items()}

    def ranks(scores: dict[object, float]) -> dict[object, int]:
        return {d: r for r, d in enumerate(sorted(scores, key=lambda d: -scores[d]), start=1)}

    for wk, wd in ((1.0, 1.0), (2.5, 0.5), (0.0, 1.0)):
        weights = {"keyword": wk, "dense": wd}
        rel_k, rel_d = scaled(keyword), scaled(dense)
        want = {d: wk * rel_k.get(d, 0.0) + wd * rel_d.get(d, 0.0) for d in dense}
        hits = await search(api, coll, query, mode="hybrid", top_k=50, weights=weights)  # relative is the default
        assert {h["document_id"]: round(h["score"], 6) for h in hits} == {d: round(v, 6) for d, v in want.items()}
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        rk, rd = ranks(keyword), ranks(dense)
        want = {d: (wk / (60 + rk[d]) if d in rk else 0.0) + wd / (60 + rd[d]) for d in dense}
        hits = await search(api, coll, query, mode="hybrid", top_k=50, weights=weights, fusion="rrf")
        assert {h["document_id"]: round(h["score"], 9) for h in hits} == {d: round(v, 9) for d, v in want.items()}
    # Keyword weight 0: the dense order, whichever fusion.
    for fusion in ("relative", "rrf"):
        hits = await search(api, coll, query, mode="hybrid", weights={"keyword": 0.0, "dense": 1.0}, fusion=fusion)
        assert ids(hits) == sorted(dense, key=lambda d: -dense[d])[: len(hits)]
    bad = await api.post(f"{URL}/{coll}/search", json={"query": query, "fusion": "max"})
    assert bad.status_code == 422 and "fusion" in bad.text


async def test_long_documents_are_chunked_and_parts_keep_pages_and_headings(api: httpx.AsyncClient) -> None:
    coll = (await new_collection(api, chunking={"size": 20, "overlap": 0.25}))["id"]
    words = [f"word{i}" for i in range(50)]
    text = "  ".join(words)
    parts = [
        {"id": "book", "text": text, "page": 1, "heading": "Intro", "metadata": {"author": "ann"}},
        {"id": "book", "text": "The final chapter mentions a lighthouse keeper.", "page": 2, "heading": "End"},
    ]
    added = await add(api, coll, parts)
    assert added["document_ids"] == ["book"] and added["chunk_count"] == 4  # 50 words: 3 chunks, then 1
    doc = (await api.get(f"{URL}/{coll}/documents/book")).json()
    assert doc["metadata"] == {"author": "ann"} and doc["chunk_count"] == 4
    chunks = doc["chunks"]
    assert [c["seq"] for c in chunks] == [0, 1, 2, 3]
    assert chunks[0]["text"].split() == words[:20] and chunks[1]["text"].split() == words[15:35]
    assert chunks[2]["text"].split() == words[30:50]
    assert text[chunks[1]["start"] : chunks[1]["end"]] == chunks[1]["text"]
    assert [c["page"] for c in chunks] == [1, 1, 1, 2] and chunks[3]["heading"] == "End"
    [hit] = await search(api, coll, "lighthouse", mode="keyword")
    assert hit["page"] == 2 and hit["heading"] == "End" and hit["chunk_id"] == chunks[3]["chunk_id"]
    assert hit["metadata"] == {"author": "ann"}


async def test_replacing_and_deleting_documents_updates_every_index(api: httpx.AsyncClient) -> None:
    coll = (await new_collection(api))["id"]
    await add(api, coll, ANIMALS)
    await add(api, coll, [{"id": "owl", "text": "Volcanoes erupt molten basalt lava.", "metadata": {"kind": "rock"}}])
    assert await search(api, coll, "silent feathers mice", mode="keyword") == []
    for mode in ("keyword", "dense", "hybrid"):
        hits = await search(api, coll, "volcano lava", mode=mode, top_k=10)
        assert ids(hits)[0] == "owl" and ids(hits).count("owl") == 1
        assert "Owls" not in " ".join(h["text"] for h in hits)
    got = (await api.get(f"{URL}/{coll}")).json()
    assert got["document_count"] == 5 and got["chunk_count"] == 5
    assert (await api.get(f"{URL}/{coll}/documents/owl")).json()["metadata"] == {"kind": "rock"}

    assert (await api.delete(f"{URL}/{coll}/documents/penguin")).status_code == 204
    assert (await api.delete(f"{URL}/{coll}/documents/penguin")).status_code == 404
    assert (await api.get(f"{URL}/{coll}/documents/penguin")).status_code == 404
    for mode in ("keyword", "dense", "hybrid"):
        assert "penguin" not in ids(await search(api, coll, "penguins Antarctica", mode=mode, top_k=10))
    got = (await api.get(f"{URL}/{coll}")).json()
    assert got["document_count"] == 4 and got["chunk_count"] == 4

    r = await api.get(f"{URL}/{coll}/documents", params={"limit": 3})
    assert r.status_code == 200, r.text
    page = r.json()
    rest = (await api.get(f"{URL}/{coll}/documents", params={"limit": 3, "cursor": page["next_cursor"]})).json()
    assert [d["id"] for d in page["data"] + rest["data"]] == ["camel", "loup", "owl", "shark"]


async def test_vectors_of_another_model_or_dimension_are_refused(api: httpx.AsyncClient) -> None:
    coll = (await new_collection(api))["id"]
    url = f"{URL}/{coll}/documents"
    r = await api.post(url, json=[{"id": "a", "text": "short", "embedding": [0.1, 0.2, 0.3]}])
    assert r.status_code == 422 and "384" in r.text, r.text
    r = await api.post(url, json=[{"id": "a", "text": "short", "embedding": [0.1] * 384, "embedding_model": "other"}])
    assert r.status_code == 422 and "all-MiniLM-L6-v2" in r.text
    # Nothing was stored by the refused calls.
    assert (await api.get(url)).json()["data"] == []
    vector = [0.0] * 384
    vector[7] = 1.0
    ok = [{"id": "a", "text": "short", "embedding": vector, "embedding_model": "all-MiniLM-L6-v2"}]
    assert (await api.post(url, json=ok)).json()["chunk_count"] == 1
    assert ids(await search(api, coll, "anything", mode="dense")) == ["a"]


async def test_bad_input_is_refused_with_the_limit(api: httpx.AsyncClient) -> None:
    coll = (await new_collection(api))["id"]
    url = f"{URL}/{coll}/documents"
    r = await api.post(url, json=[{"text": f"doc {i}"} for i in range(101)])
    assert r.status_code == 422 and "100" in r.text
    assert (await api.post(url, json=[{"text": "nul \u0000 here"}])).status_code == 422
    assert (await api.post(url, json=[])).status_code == 422
    assert (await api.post(f"{URL}/{coll}/search", json={"query": "x", "top_k": 101})).status_code == 422
    assert (await api.post(f"{URL}/{coll}/search", json={"query": "x", "mode": "fuzzy"})).status_code == 422
    assert (await api.post(url, json=[{"text": "x", "metadata": {"k": {"nested": 1}}}])).status_code == 422


async def test_tenants_never_see_each_others_chunks(deployment: Deployment) -> None:
    (_, a), (_, b) = await deployment.api(), await deployment.api()
    coll_a = (await new_collection(a, "shared-name"))["id"]
    coll_b = (await new_collection(b, "shared-name"))["id"]  # names are per tenant
    await add(b, coll_b, [{"id": "b1", "text": "Tenant B writes about quasars and pulsars."}])
    before = await search(b, coll_b, "quasars", mode="keyword")
    await add(a, coll_a, [{"id": f"a{i}", "text": f"Quasars number {i} secret of tenant A"} for i in range(20)])
    for mode in ("keyword", "dense", "hybrid"):
        hits = await search(b, coll_b, "quasars secret tenant A", mode=mode, top_k=50)
        assert ids(hits) == ["b1"], mode
    # B's keyword scores do not move when A's collection grows: nothing of A's counts in B's statistics.
    assert (await search(b, coll_b, "quasars", mode="keyword"))[0]["score"] == before[0]["score"]
    for method, path, body in [
        ("GET", f"{URL}/{coll_a}", None),
        ("POST", f"{URL}/{coll_a}/search", {"query": "quasars"}),
        ("POST", f"{URL}/{coll_a}/answer", {"query": "quasars"}),
        ("GET", f"{URL}/{coll_a}/documents", None),
        ("GET", f"{URL}/{coll_a}/documents/a1", None),
        ("DELETE", f"{URL}/{coll_a}/documents/a1", None),
        ("POST", f"{URL}/{coll_a}/documents", [{"id": "a1", "text": "overwrite"}]),
        ("DELETE", f"{URL}/{coll_a}", None),
    ]:
        r = await b.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
    assert [c["id"] for c in (await b.get(URL)).json()["data"]] == [coll_b]
    assert (await a.get(f"{URL}/{coll_a}")).json()["document_count"] == 20


async def test_a_small_collection_inside_a_large_table_still_returns_top_k(deploy_app: object) -> None:
    # Every collection takes the HNSW path here (no exact search), which alone would return too few rows.
    async with deploy_app(env={"FAAS_RAG_EXACT_SEARCH_MAX_CHUNKS": "0"}) as d:  # type: ignore[operator]
        (_, big), (_, small) = await d.api(), await d.api()
        rng = random.Random(7)

        def unit() -> list[float]:
            v = [rng.gauss(0, 1) for _ in range(384)]
            norm = math.sqrt(sum(x * x for x in v))
            return [x / norm for x in v]

        coll_big = (await new_collection(big, "big"))["id"]
        for batch in range(15):
            docs = [
                {"id": f"b{batch}-{i}", "text": f"filler {batch} {i}", "embedding": unit(), "metadata": {"g": i % 100}}
                for i in range(100)
            ]
            await add(big, coll_big, docs)
        coll_small = (await new_collection(small, "small"))["id"]
        await add(small, coll_small, [{"id": f"s{i}", "text": f"small {i}", "embedding": unit()} for i in range(12)])
        for mode in ("dense", "hybrid"):
            hits = await search(small, coll_small, "anything at all", mode=mode, top_k=10)
            assert len(hits) == 10 and all(str(h).count("s") for h in ids(hits)), mode
            assert {str(i)[0] for i in ids(hits)} == {"s"}
        # A selective filter inside one large collection: 15 of its 1,500 chunks match.
        for mode in ("dense", "hybrid"):
            filtered = await search(big, coll_big, "anything", mode=mode, top_k=10, filters={"g": 42})
            assert len(filtered) == 10 and {h["metadata"]["g"] for h in filtered} == {42}, mode
        assert await search(big, coll_big, "x", mode="dense", top_k=10, filters={"nope": 1}) == []
