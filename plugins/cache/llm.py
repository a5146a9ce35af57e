"""Keys for the LLM-response cache: the canonical hash of a chat request, and what a semantic match may share.

The exact key hashes everything in the request that can change the answer. Rather than list those fields
(providers keep adding them), it drops only the few known not to (`stream`, cache options...), so an
unknown parameter makes two requests different, never wrongly equal. `user` (the end user a tenant names) is
kept: an answer cached for one end user is served to that end user only, unless the caller removes `user`
from the request it hands over (the gateway does for `"cache": {"per_user": false}`). Numbers are normalised
(1 == 1.0) and null fields dropped, so equivalent JSON spellings hash the same.

The semantic match key is the same hash with the user's text taken out: a semantic hit therefore shares the
tenant (the query filters on it), the model, the system prompt, the tools and every sampling parameter with the
cached request, and differs only in the wording of the one user message.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from app import codec

# Fields that never change the answer: transport, bookkeeping, and this cache's own options. Not `user`: it scopes
# an answer to one end user.
IGNORED_FIELDS = frozenset({"stream", "stream_options", "cache", "metadata", "store", "service_tier"})
SYSTEM_ROLES = frozenset({"system", "developer"})


def _normal(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(codec.canonical(body)).hexdigest()


def canonical(request: dict[str, Any]) -> dict[str, Any]:
    normal: dict[str, Any] = _normal({k: v for k, v in request.items() if k not in IGNORED_FIELDS})
    return normal


def request_key(request: dict[str, Any]) -> str:
    """The exact-match key: sha256 of the canonical request."""
    return _digest(canonical(request))


@dataclass(frozen=True)
class SingleTurn:
    """A request the semantic cache may answer: one user message, optionally after one system message."""

    model: str
    user_text: str
    match_key: str


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only all-text messages qualify
        parts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                return None
            parts.append(part["text"])
        return "\n".join(parts)
    return None


def single_turn(request: dict[str, Any]) -> SingleTurn | None:
    """The request's single user turn, or None when the semantic cache must not answer it."""
    messages = request.get("messages")
    model = request.get("model")
    if not isinstance(messages, list) or not isinstance(model, str) or not 1 <= len(messages) <= 2:
        return None
    if not all(isinstance(m, dict) for m in messages):
        return None
    *system, user = messages
    if user.get("role") != "user" or (system and system[0].get("role") not in SYSTEM_ROLES):
        return None
    text = _text(user.get("content"))
    if text is None or not text.strip() or not (_utf8(text) and _utf8(model)):
        return None
    body = canonical(request)
    body["messages"] = [*body["messages"][:-1], {"role": "user", "content": "\x00semantic\x00"}]
    return SingleTurn(model=model, user_text=text, match_key=_digest(body))


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # lone surrogates: cannot be stored as text or embedded
        return False
    return True


_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_NEGATION = re.compile(r"\b(?:not|no|never|without|don't|doesn't|isn't|aren't|won't|can't|cannot)\b|n't\b", re.I)


def compatible(cached: str, asked: str) -> bool:
    """Cheap lexical guards on top of the similarity threshold.

    Embeddings place "set a timer for 5 minutes" and "... 10 minutes", or a sentence and its negation, close
    together; two prompts whose numbers differ, or of which only one is negated, never share an answer.
    """
    if _NUMBER.findall(cached) != _NUMBER.findall(asked):
        return False
    return bool(_NEGATION.search(cached)) == bool(_NEGATION.search(asked))
