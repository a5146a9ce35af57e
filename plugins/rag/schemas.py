"""Request and response types of the rag plugin: the single source for validation and the OpenAPI document.

Empty until the plugin's feature routes land.
"""

from __future__ import annotations
