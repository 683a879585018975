"""Providers: the data sources behind one small interface (:mod:`portflow.providers.base`),
listed with their options in :mod:`portflow.providers.registry`."""

from __future__ import annotations

from typing import Any

from portflow.providers.base import Provider
from portflow.providers.registry import REGISTRY, build

KNOWN = tuple(REGISTRY)


def get_provider(name: str, options: dict[str, Any] | None = None) -> Provider:
    """Build the provider `name` with its config options (the profile's `provider` block)."""
    return build(name, dict(options or {}))


__all__ = ["KNOWN", "Provider", "get_provider"]
