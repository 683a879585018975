"""feature-ingest and feature-backfill (SPEC §5): wired in once the ratings engine lands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

STEPS: dict[str, Callable[..., dict[str, Any]]] = {}
