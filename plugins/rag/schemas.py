"""Request and response types of the rag plugin: the single source for validation and the OpenAPI document.

Text stored in PostgreSQL cannot hold a NUL character, so every stored string refuses one in its pattern (the
contract then never sends a schema-valid value the database would refuse). Metadata is a flat object of scalars
(or lists of scalars), which is what filters match on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, RootModel

from app.pagination import CURSOR_PATTERN
from app.schemas import ResourceId, Schema, json_integer

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"  # the gateway's local model, offline
MAX_DOCUMENTS = 100
MAX_TEXT_CHARS = 100_000
MAX_QUERY_CHARS = 4_000
MAX_TOP_K = 100
MAX_DIMENSIONS = 4096
NO_NUL = r"^[^\x00]*$"

DocumentId = Annotated[
    str, Field(pattern=CURSOR_PATTERN, description="1-200 of A-Z a-z 0-9 _ . : ~ -; chosen by you or generated")
]
CollectionName = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$", description="Unique per tenant")
]
ModelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
MetaKey = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
# Integers within 64 bits and finite floats: what JSON and jsonb agree on.
# Strict: "5" stays a string and 1 is not `true` (lax validation would coerce them and break equality filters).
MetaScalar = (
    Annotated[bool, Field(strict=True)]
    | Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)]
    | Annotated[float, Field(strict=True, allow_inf_nan=False)]
    | Annotated[str, Field(strict=True, max_length=1000, pattern=NO_NUL)]
)
MetaValue = MetaScalar | Annotated[list[MetaScalar], Field(max_length=50)]


def _keys_by_pattern(schema: dict[str, Any]) -> None:
    """pydantic writes a dict with constrained keys as `patternProperties`, which lets any other key through with
    any value; state it as the validation does: every key matches the pattern, every value the value schema."""
    props = schema.pop("patternProperties", None)
    if props:
        [(pattern, value)] = props.items()
        schema["additionalProperties"] = value
        schema.setdefault("propertyNames", {})["pattern"] = pattern


Metadata = Annotated[dict[MetaKey, MetaValue], Field(max_length=32, json_schema_extra=_keys_by_pattern)]
SearchMode = Literal["dense", "keyword", "hybrid"]
Fusion = Literal["relative", "rrf"]
Count = Annotated[int, Field(ge=1, le=MAX_TOP_K), json_integer]


class Chunking(Schema):
    """How documents are cut into chunks: `size` words each, each chunk repeating the last `overlap` share of the
    previous one (0.2 of 160 words: 32 words)."""

    size: Annotated[int, Field(ge=16, le=2000), json_integer] = 160
    overlap: float = Field(
        default=0.2, strict=True, ge=0.0, le=0.5, description="Share of `size` repeated from the previous chunk"
    )

    @property
    def overlap_words(self) -> int:
        return int(self.size * self.overlap)


class CollectionCreate(Schema):
    name: CollectionName
    embedding_model: ModelName | None = Field(
        default=None, description="A gateway embedding model; default the local all-MiniLM-L6-v2 (384 dimensions)"
    )
    chunking: Chunking = Field(default_factory=Chunking)


class CollectionPublic(Schema):
    id: str
    name: str
    embedding_model: str
    dimensions: int
    chunking: Chunking
    document_count: int
    chunk_count: int
    created_at: datetime


class CollectionList(Schema):
    data: list[CollectionPublic]
    next_cursor: str | None


class CollectionPath(Schema):
    collection_id: ResourceId


class DocumentPath(Schema):
    collection_id: ResourceId
    document_id: DocumentId


class DocumentIn(Schema):
    """A document, or one part of it: items with the same `id` in one call are the parts of one document (pages,
    sections), in order. A part longer than the collection's chunk size is chunked here."""

    id: DocumentId | None = Field(default=None, description="Re-sending an id replaces that document's chunks")
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS, pattern=NO_NUL)]
    metadata: Metadata = Field(default_factory=dict)
    page: Annotated[int, Field(ge=0, le=2**31 - 1), json_integer] | None = None
    heading: Annotated[str, Field(max_length=1000, pattern=NO_NUL)] | None = None
    embedding: (
        Annotated[
            list[Annotated[float, Field(strict=True, allow_inf_nan=False)]],
            Field(min_length=1, max_length=MAX_DIMENSIONS),
        ]
        | None
    ) = Field(
        default=None,
        description="A vector computed by you (the part must then fit in one chunk); it must be of the "
        "collection's model and dimension",
    )
    embedding_model: ModelName | None = Field(
        default=None, description="The model `embedding` came from; refused unless it is the collection's"
    )


class DocumentsAdd(RootModel[Annotated[list[DocumentIn], Field(min_length=1, max_length=MAX_DOCUMENTS)]]):
    """Up to 100 documents (or parts of documents) per call."""


class DocumentsAdded(Schema):
    document_ids: list[str]
    chunk_count: int
    searchable: bool = Field(description="True: every chunk is in every index now")
    job_id: str | None = Field(default=None, description="The job to poll when `searchable` is false")


class DocumentPublic(Schema):
    id: str
    metadata: dict[str, MetaValue]
    chunk_count: int
    length: int = Field(description="Characters of text, all parts together")
    created_at: datetime
    updated_at: datetime


class ChunkPublic(Schema):
    chunk_id: str
    seq: int
    text: str
    page: int | None = None
    heading: str | None = None
    start: int
    end: int


class DocumentDetail(DocumentPublic):
    chunks: list[ChunkPublic]


class DocumentList(Schema):
    data: list[DocumentPublic]
    next_cursor: str | None


class AnyOf(Schema):
    any: Annotated[list[MetaScalar], Field(min_length=1, max_length=100)]


Filters = Annotated[
    dict[MetaKey, MetaScalar | AnyOf],
    Field(
        max_length=16,
        json_schema_extra=_keys_by_pattern,
        description='Metadata conditions, all of which must hold: `{"key": value}` (equal, or a list holding '
        'it) or `{"key": {"any": [values]}}` (one of them)',
    ),
]


class Weights(Schema):
    dense: float = Field(default=1.0, strict=True, ge=0.0, le=100.0)
    keyword: float = Field(default=1.0, strict=True, ge=0.0, le=100.0)


class SearchIn(Schema):
    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, pattern=NO_NUL)]
    mode: SearchMode = "hybrid"
    top_k: Count = 10
    filters: Filters = Field(default_factory=dict)
    weights: Weights = Field(default_factory=Weights, description="Weights of the two rankings in a hybrid search")
    fusion: Fusion = Field(
        default="relative",
        description="How hybrid merges the rankings: `relative` adds each ranking's scores scaled to 0..1 over its "
        "candidates (weighted); `rrf` adds weight / (rrf_k + rank)",
    )
    rrf_k: Annotated[int, Field(ge=1, le=1000), json_integer] = 60


class Hit(Schema):
    document_id: str
    chunk_id: str
    text: str
    score: float
    metadata: dict[str, MetaValue]
    page: int | None = None
    heading: str | None = None


class SearchOut(Schema):
    hits: list[Hit]


class AnswerIn(SearchIn):
    model: ModelName = Field(default="mock-1", description="A gateway chat model")
    top_k: Count = 5
    stream: bool = Field(default=False, strict=True, description="Server-sent events: passages, deltas, citations")
    retrieval_only: bool = Field(default=False, strict=True, description="Return the passages without generating")
    max_tokens: Annotated[int, Field(ge=1, le=32_000), json_integer] | None = None


class Citation(Schema):
    passage: int = Field(description="The passage's number in the prompt ([n] in the answer)")
    document_id: str
    chunk_id: str
    page: int | None = None


# One server-sent event of a streamed answer, as OpenAPI 3.1 documents the items of a stream.
ANSWER_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": ["passages", "delta", "citations", "done", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


class AnswerOut(Schema):
    answer: str | None = Field(description="null when `retrieval_only`")
    citations: list[Citation]
    passages: list[Hit] = Field(description="The retrieved passages, numbered from 1 in this order")
    model: str | None = None
