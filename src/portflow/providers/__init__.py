"""Providers: the data sources behind one small interface (:mod:`portflow.providers.base`)."""

from __future__ import annotations

from typing import Any

from portflow.errors import ConfigError, NotAvailableError, suggest
from portflow.providers.base import Provider

KNOWN = ("synthetic", "files", "ccxt", "tradingview")


def get_provider(name: str, options: dict[str, Any] | None = None) -> Provider:
    """Build the provider `name` with its config options (the profile's `provider` block)."""
    opts = dict(options or {})
    if name == "synthetic":
        from portflow.providers.synthetic import SyntheticProvider

        allowed = {"seed", "latency_ms", "sizes", "start"}
        unknown = sorted(set(opts) - allowed)
        if unknown:
            raise ConfigError(
                f"provider.{unknown[0]}: unknown option for the synthetic provider"
                f"{suggest(unknown[0], allowed)} (known: {', '.join(sorted(allowed))})"
            )
        return SyntheticProvider(**opts)
    if name in KNOWN:
        raise NotAvailableError(f"provider '{name}' is not available yet")
    raise ConfigError(f"provider '{name}' is unknown{suggest(name, KNOWN)}; known: {', '.join(KNOWN)}")


__all__ = ["Provider", "get_provider"]
