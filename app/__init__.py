"""Motadata FaaS: seven AI-platform services as plugins of one Starlette process."""

__version__ = "0.1.0"
