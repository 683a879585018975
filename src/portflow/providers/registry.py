"""The provider registry: each provider's name, options model, universes and constructor.

1. Every provider declares a pydantic options model (``extra="forbid"``). The config loader
   validates a profile's ``provider`` and ``scan_provider`` blocks against it at load time, so
   an unknown provider or option, or a bad value, is a configuration error naming the file
   and key — before any step runs. The validated options (defaults filled in, a relative
   ``path`` made absolute against the config dir) are what ``profiles show`` prints and what
   run.json records.
2. ``universe_error(options, universe)`` checks a scanner's universe at load, offline.
3. ``build(name, options)`` imports the provider's module only then, so the optional extras
   (``portflow[ccxt]``, ``portflow[tradingview]``) are needed only by profiles that use them;
   a missing extra is a configuration error that says which ``pip install`` fixes it.
4. ``bars`` says whether the provider has OHLCV history. TradingView has none: it can only be
   a profile's ``scan_provider`` (discovery), beside a bar ``provider`` such as ccxt.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from portflow.errors import ConfigError, suggest
from portflow.providers.base import Provider

_DATE = r"^\d{4}-\d{2}-\d{2}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_KEY_PART = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
OHLCV_FIELDS = ("timestamp", "open", "high", "low", "close", "volume")


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticOptions(_Options):
    """The embedded synthetic market (offline)."""

    seed: int = 7
    latency_ms: float = Field(default=0.0, ge=0)
    sizes: dict[str, int] = {}
    start: str = Field(default="2019-01-01", pattern=_DATE)

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: dict[str, int]) -> dict[str, int]:
        from portflow.providers.synthetic import CRYPTO, EQUITIES

        for universe, size in v.items():
            if universe not in (CRYPTO, EQUITIES):
                raise ValueError(f"unknown universe '{universe}'{suggest(universe, (CRYPTO, EQUITIES))}"
                                 f" (known: {CRYPTO}, {EQUITIES})")
            if size < 1:
                raise ValueError(f"sizes.{universe} must be >= 1, got {size}")
        return v


class FilesOptions(_Options):
    """A folder of per-symbol daily OHLCV files (SPEC §5)."""

    path: str
    calendar: str = "XNYS"
    columns: dict[str, str] = {}
    metadata: str | None = None
    tick_size: float | None = Field(default=None, gt=0)
    lot_size: float | None = Field(default=None, gt=0)
    case_sensitive: bool = False
    id: str | None = Field(default=None, pattern=_KEY_PART)

    @field_validator("path", "metadata")
    @classmethod
    def _absolute(cls, v: str | None, info: ValidationInfo) -> str | None:
        """A relative path is relative to the config dir (SPEC §5)."""
        if v is None:
            return None
        base = (info.context or {}).get("config_dir")
        path = Path(v).expanduser()
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        return str(path.resolve())  # absolute: the run records where it read from

    @field_validator("calendar")
    @classmethod
    def _calendar(cls, v: str) -> str:
        return check_calendar(v)

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: dict[str, str]) -> dict[str, str]:
        for src, dst in v.items():
            if dst not in OHLCV_FIELDS:
                raise ValueError(f"columns.{src} maps to '{dst}'{suggest(dst, OHLCV_FIELDS)};"
                                 f" targets are {', '.join(OHLCV_FIELDS)}")
        targets = list(v.values())
        dup = sorted({t for t in targets if targets.count(t) > 1})
        if dup:
            raise ValueError(f"columns map more than one file column to {dup}")
        return v


class CcxtOptions(_Options):
    """A crypto exchange through ccxt (extra ``portflow[ccxt]``)."""

    exchange: str = Field(pattern=r"^[a-z0-9_]+$")
    rate_limit_per_s: float = Field(default=5.0, gt=0, le=1000)
    api_key_env: str | None = Field(default=None, pattern=_ENV_NAME)
    secret_env: str | None = Field(default=None, pattern=_ENV_NAME)
    password_env: str | None = Field(default=None, pattern=_ENV_NAME)
    urls: dict[str, Any] | None = None
    timeout_s: float = Field(default=20.0, gt=0)
    max_retries: int = Field(default=5, ge=0, le=20)
    backoff_s: float = Field(default=0.5, gt=0)
    scan_bars: int = Field(default=400, ge=100, le=5000)
    scan_markets_max: int | None = Field(default=None, gt=0)

    @field_validator("exchange")
    @classmethod
    def _exchange(cls, v: str) -> str:
        known = ccxt_exchanges()
        if known is None:  # not installed: the id is checked again when the provider is built
            return v
        if v not in known:
            raise ValueError(f"unknown ccxt exchange id '{v}'{suggest(v, known)}")
        return v


@functools.cache
def ccxt_exchanges() -> tuple[str, ...] | None:
    """``ccxt.exchanges`` without importing ccxt, None when it is not installed. Importing it
    imports every exchange (~0.4 s), and every configuration load checks the exchange ids of
    the ccxt profiles; ccxt has one module per exchange, ``ccxt/<id>.py``, so their names are
    the list (tests compare the two)."""
    spec = importlib.util.find_spec("ccxt")
    if spec is None:
        return None
    ids = sorted({p.stem for folder in spec.submodule_search_locations or ()
                  for p in Path(folder).glob("*.py")} - {"__init__"})
    if not ids:  # not laid out as files (e.g. a zipped install): ask ccxt itself
        import ccxt

        return tuple(ccxt.exchanges)
    return tuple(ids)


class TradingViewOptions(_Options):
    """The TradingView screener (extra ``portflow[tradingview]``): discovery and current
    ratings only — no OHLCV history."""

    url: str = Field(default="https://scanner.tradingview.com", pattern=r"^https?://")
    rate_limit_per_s: float = Field(default=1.0, gt=0, le=100)
    timeout_s: float = Field(default=20.0, gt=0)
    max_retries: int = Field(default=5, ge=0, le=20)
    backoff_s: float = Field(default=1.0, gt=0)
    page_size: int = Field(default=1000, ge=1, le=5000)
    max_rows: int = Field(default=10_000, ge=1)


def check_calendar(v: str) -> str:
    """'24/7' or an exchange-calendars code (e.g. XNYS)."""
    if v == "24/7":
        return v
    import exchange_calendars as xcals

    names = xcals.get_calendar_names(include_aliases=True)
    if v not in names:
        raise ValueError(f"unknown calendar '{v}'{suggest(v, names)}; use '24/7' or an"
                         " exchange-calendars code such as XNYS")
    return v


def _synthetic_universe(opts: BaseModel, universe: str) -> str | None:
    from portflow.providers.synthetic import CRYPTO, EQUITIES

    known = (CRYPTO, EQUITIES)
    if universe in known:
        return None
    return f"unknown synthetic universe '{universe}'{suggest(universe, known)} (known: {', '.join(known)})"


def _files_universe(opts: BaseModel, universe: str) -> str | None:
    return None if universe == "files" else f"the files provider has one universe, 'files', not '{universe}'"


CCXT_UNIVERSE = re.compile(r"^(?P<exchange>[a-z0-9_]+)-(?P<type>spot|swap)-(?P<quote>[a-z0-9]+)$")


def _ccxt_universe(opts: BaseModel, universe: str) -> str | None:
    assert isinstance(opts, CcxtOptions)
    m = CCXT_UNIVERSE.match(universe)
    if m is None:
        return (f"ccxt universe '{universe}' is not <exchange>-<spot|swap>-<quote>,"
                f" e.g. {opts.exchange}-spot-usdt")
    if m["exchange"] != opts.exchange:
        return (f"universe '{universe}' is on '{m['exchange']}' but the provider's exchange is"
                f" '{opts.exchange}'; use {opts.exchange}-{m['type']}-{m['quote']}")
    return None


def _tradingview_universe(opts: BaseModel, universe: str) -> str | None:
    if re.fullmatch(r"[a-z0-9]+", universe):
        return None
    return (f"TradingView universe '{universe}' is not a screener market name such as crypto,"
            " america, forex, futures (lowercase letters and digits)")


@dataclass(frozen=True)
class ProviderSpec:
    """What the registry knows of one provider (module docstring)."""

    name: str
    options: type[_Options]
    module: str  # defines from_options(options) -> Provider
    bars: bool
    universe_error: Callable[[BaseModel, str], str | None]
    extra: str | None = None  # the pip extra that installs `requires`
    requires: tuple[str, ...] = ()
    single_universe: str | None = None


REGISTRY: dict[str, ProviderSpec] = {
    s.name: s
    for s in (
        ProviderSpec("synthetic", SyntheticOptions, "portflow.providers.synthetic", True,
                     _synthetic_universe),
        ProviderSpec("files", FilesOptions, "portflow.providers.files", True, _files_universe,
                     single_universe="files"),
        ProviderSpec("ccxt", CcxtOptions, "portflow.providers.ccxt_exchange", True,
                     _ccxt_universe, extra="ccxt", requires=("ccxt",)),
        ProviderSpec("tradingview", TradingViewOptions, "portflow.providers.tradingview", False,
                     _tradingview_universe, extra="tradingview",
                     requires=("tradingview_screener", "requests")),
    )
}


def spec(name: str) -> ProviderSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"provider '{name}' is unknown{suggest(name, REGISTRY)}; known: {', '.join(REGISTRY)}"
        ) from None


def validate_options(name: str, options: dict[str, Any], config_dir: Path | None = None) -> _Options:
    """Step 1: the provider's options model (raises pydantic's ValidationError)."""
    return spec(name).options.model_validate(options, context={"config_dir": config_dir})


def lake_key(name: str, options: dict[str, Any] | BaseModel) -> str:
    """The lakehouse key (``Provider.name``) of provider ``name`` with these options — a pure
    function of the resolved config, so Phase 2 can find a run's bars from its recorded config
    alone: ``synthetic``, ``files`` or ``files-<id>``, ``ccxt-<exchange>``, ``tradingview``."""
    opts = options.model_dump() if isinstance(options, BaseModel) else options
    if name == "files" and opts.get("id"):
        return f"files-{opts['id']}"
    if name == "ccxt":
        return f"ccxt-{opts['exchange']}"
    return name


def build(name: str, options: dict[str, Any]) -> Provider:
    """Step 3: construct provider ``name`` from its validated options."""
    s = spec(name)
    opts = s.options.model_validate(options)
    try:
        module = importlib.import_module(s.module)
    except ImportError as exc:
        if exc.name not in s.requires:
            raise
        raise ConfigError(
            f"provider '{name}' needs the package '{exc.name}', which is not installed;"
            f" run pip install 'portflow[{s.extra}]'"
        ) from None
    provider: Provider = module.from_options(opts)
    return provider


__all__ = [
    "REGISTRY",
    "CcxtOptions",
    "FilesOptions",
    "ProviderSpec",
    "SyntheticOptions",
    "TradingViewOptions",
    "build",
    "lake_key",
    "spec",
    "validate_options",
]
