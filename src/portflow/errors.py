"""One error tree for portflow; the CLI maps each branch to an exit code.

    PortflowError                 base; ``exit_code`` 1 (unexpected)
    ├── ConfigError               bad configuration or usage            -> exit 2
    │   ├── UsageError            bad command-line input (run id, date) -> exit 2
    │   └── NotAvailableError     capability not built yet              -> exit 2
    ├── ProviderError             a data source failed                  -> exit 1
    ├── DataError                 stored data unusable                  -> exit 1
    │   └── HealthGateError       a data/health gate failed; run failed -> exit 3
    ├── OptimisationError         every fallback link of a solver failed-> exit 1
    └── RunError                  run workspace problems                -> exit 2

Every message says what went wrong, where, and how to fix it, on one line.
Argument misuse inside the library stays ``ValueError`` / ``TypeError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PortflowError(Exception):
    """Base of every error portflow raises on purpose."""

    exit_code = 1


class ConfigError(PortflowError):
    """Configuration or usage is wrong; nothing ran."""

    exit_code = 2


class UsageError(ConfigError):
    """A command-line value is invalid (run id, date, option)."""


class NotAvailableError(ConfigError):
    """The capability exists in the spec but is not built yet."""


class ProviderError(PortflowError):
    """A provider could not answer (network, parse, unknown symbol)."""


class DataError(PortflowError):
    """Stored data is missing or unusable."""


class HealthGateError(DataError):
    """A data or health gate failed: the run is marked failed and says why."""

    exit_code = 3


class OptimisationError(PortflowError):
    """An optimiser could not produce weights through its whole fallback chain."""


class RunError(PortflowError):
    """A run workspace is missing, taken, or inconsistent."""

    exit_code = 2


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return "; did you mean 'x'?" for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
