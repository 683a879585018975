"""One error tree for portflow; the CLI maps each branch to an exit code.

    PortflowError                 base; ``exit_code`` 1 (unexpected)
    ├── ConfigError               bad configuration or usage            -> exit 2
    │   ├── UsageError            bad command-line input (run id, date) -> exit 2
    │   └── NotAvailableError     capability not built yet              -> exit 2
    ├── ProviderError             a data source failed                  -> exit 1
    │   ├── TransientProviderError 429 / 5xx / timeout / connection: retried with backoff
    │   │   └── RateLimitedError   429 (its Retry-After is honoured)
    │   ├── RetriesExhaustedError transient failures outlasted the retry policy
    │   ├── PartialFetchError     a paginated fetch stopped midway; carries the bars so far
    │   └── ProviderResponseError the source answered something unusable (field, symbol)
    ├── DataError                 stored data unusable                  -> exit 1
    │   ├── HealthGateError       a data/health gate failed; run failed -> exit 3
    │   └── CorruptTableError     a stored file does not open           -> exit 3
    ├── OptimisationError         every fallback link of a solver failed-> exit 1
    └── RunError                  run workspace problems                -> exit 2

Every message says what went wrong, where, and how to fix it, on one line of at most a few
hundred characters: values quoted in a message go through :func:`short`, and the CLI passes
every message through :func:`one_line`. Argument misuse inside the library stays
``ValueError`` / ``TypeError``. Ctrl-C and SIGTERM are not errors (:mod:`portflow.signals`).
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


class TransientProviderError(ProviderError):
    """A failure worth retrying: HTTP 429 or 5xx, a timeout, a dropped connection.

    ``retry_after`` (seconds) is the server's own hint (a Retry-After header), if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(TransientProviderError):
    """HTTP 429: the source asks us to slow down."""


class RetriesExhaustedError(ProviderError):
    """Transient failures outlasted the retry policy; the message names provider and symbol."""


class PartialFetchError(ProviderError):
    """A paginated fetch failed after some pages: ``bars`` holds the pages that arrived (a
    contiguous prefix), so the caller can keep them and resume from there on the next run."""

    def __init__(self, message: str, bars: object) -> None:
        super().__init__(message)
        self.bars = bars


class ProviderResponseError(ProviderError):
    """The source answered, but with something unusable (unknown field or symbol, bad body)."""


class DataError(PortflowError):
    """Stored data is missing or unusable."""


class HealthGateError(DataError):
    """A data or health gate failed: the run is marked failed and says why."""

    exit_code = 3


class CorruptTableError(DataError):
    """A stored file (table, run.json) does not open; the message names it and the repair."""

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


MESSAGE_CHARS = 400
VALUE_CHARS = 60


def short(value: object, limit: int = VALUE_CHARS) -> str:
    """`repr(value)` cut to `limit` characters, for quoting user input in a message (a YAML
    alias bomb must not turn one error line into megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(message: str, limit: int = MESSAGE_CHARS) -> str:
    """The first line of `message`, cut to `limit` characters."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."
