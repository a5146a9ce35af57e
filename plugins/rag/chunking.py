"""Cutting text into chunks: the word windows of app.chunking (shared with the ingestion plugin's chunker)."""

from __future__ import annotations

from app.chunking import Piece, chunk_text

__all__ = ["Piece", "chunk_text"]
