"""Pydantic models of the configuration (SPEC §3). Unknown keys are errors (`extra="forbid"`).

The models describe *resolved* configuration: a sleeve profile after the deep merge over
`defaults`, a scanner after its `extends` chain. Loading, merging and error messages that
name the file and key path live in :mod:`portflow.config.loader`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Direction = Literal["LONG", "SHORT"]
FilterOp = Literal[">", ">=", "<", "<=", "==", "!=", "in", "not_in", "between"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- scanners -----------------------------------------------------------------------------


class LeafFilter(_Model):
    """`{field, op, value}`: one comparison on a canonical scanner field."""

    field: str
    op: FilterOp
    value: Any

    @model_validator(mode="after")
    def _value_shape(self) -> LeafFilter:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op '{self.op}' needs a list value")
        if self.op == "between" and not (isinstance(self.value, list) and len(self.value) == 2):
            raise ValueError("op 'between' needs a [low, high] list value")
        return self


class AllFilter(_Model):
    all: list[FilterNode]


class AnyFilter(_Model):
    any: list[FilterNode]


class NotFilter(_Model):
    not_: FilterNode = Field(alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


FilterNode = Annotated[LeafFilter | AllFilter | AnyFilter | NotFilter, Field(union_mode="smart")]
AllFilter.model_rebuild()
AnyFilter.model_rebuild()
NotFilter.model_rebuild()


class SortSpec(_Model):
    field: str
    order: Literal["asc", "desc"] = "desc"


class Scanner(_Model):
    """A resolved scanner: universe + filters (all of them must hold) + sort + limit."""

    name: str
    universe: str
    direction: Direction = "LONG"
    filters: list[FilterNode] = []
    sort: SortSpec | None = None
    limit: int | None = Field(default=None, gt=0)
    description: str | None = None


# -- profiles -----------------------------------------------------------------------------


class ProviderConfig(_Model):
    """Which provider a sleeve talks to; the other keys are that provider's options, which the
    loader validates against the provider's own options model (providers.registry)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = "synthetic"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ScanProviderConfig(ProviderConfig):
    """A discovery provider beside the bar provider (e.g. TradingView scans, ccxt has bars).

    `symbol_map` maps a scanned symbol (e.g. `BINANCE:BTCUSDT`) to the bar provider's symbol
    and wins over the default mapping; `bars_universe` is the bar provider's universe the
    scanned symbols are looked up in (optional when the bar provider has only one)."""

    name: str
    symbol_map: dict[str, str] = {}
    bars_universe: str | None = None


class ScanConfig(_Model):
    allow_partial: bool = False


class IngestConfig(_Model):
    jobs: int | None = Field(default=None, gt=0)
    strict: bool = False


class HealthConfig(_Model):
    lookback_bars: int | None = Field(default=None, gt=10)
    min_healthy_fraction: float = Field(default=0.6, ge=0, le=1)
    min_assets: int = Field(default=10, ge=2)


class SelectionConfig(_Model):
    top_n: int = Field(default=3, gt=0)
    cluster_threshold: float = Field(default=0.5, gt=0)
    max_clusters: int = Field(default=25, gt=0)
    entropy_max: float = Field(default=0.95, gt=0, le=1)
    efficiency_min: float = Field(default=0.05, ge=0, le=1)
    kurtosis_max: float = 20.0
    vol_max: float = Field(default=2.5, gt=0)
    friction_hurdle: float = 0.02
    min_winners: int = Field(default=15, gt=0)
    max_winners: int = Field(default=25, gt=0)
    weights: dict[str, float] | None = None

    @model_validator(mode="after")
    def _winner_bounds(self) -> SelectionConfig:
        if self.max_winners < self.min_winners:
            raise ValueError("max_winners must be >= min_winners")
        return self


Method = Literal["hrp", "min_var", "max_sharpe", "equal_weight", "risk_parity"]


class OptimizationConfig(_Model):
    methods: list[Method] = ["hrp", "min_var", "max_sharpe", "equal_weight", "risk_parity"]
    primary_method: Method = "hrp"
    max_weight: float = Field(default=0.25, gt=0, le=1)
    cluster_cap: float = Field(default=0.25, gt=0, le=1)
    cap_headroom: float = Field(default=1.5, ge=1)
    covariance: Literal["ledoit_wolf", "sample"] = "ledoit_wolf"
    linkage: Literal["ward", "single", "complete", "average"] = "ward"
    risk_free: float = Field(default=0.0, gt=-1)  # annual rate, converted per bar


ELIGIBILITY_FIELDS = ("recommend_all", "recommend_ma", "recommend_other")


def _leaf_fields(node: Any) -> list[str]:
    if isinstance(node, LeafFilter):
        return [node.field]
    if isinstance(node, NotFilter):
        return _leaf_fields(node.not_)
    kids = node.all if isinstance(node, AllFilter) else node.any
    return [f for k in kids for f in _leaf_fields(k)]


class BacktestConfig(_Model):
    """Walk-forward windows in bars (null: by calendar), costs in basis points of traded
    notional (null: by calendar), and the eligibility filter per direction, evaluated at each
    rebalance on the features matrix as of the previous bar (SPEC §6.7; null = everyone)."""

    train_bars: int | None = Field(default=None, gt=0)
    test_bars: int | None = Field(default=None, gt=0)
    step_bars: int | None = Field(default=None, gt=0)
    commission_bps: float | None = Field(default=None, ge=0)
    slippage_bps: float | None = Field(default=None, ge=0)
    eligibility: dict[Direction, FilterNode] | None = {
        "LONG": LeafFilter(field="recommend_all", op=">", value=0),
        "SHORT": LeafFilter(field="recommend_all", op="<", value=0),
    }

    @model_validator(mode="after")
    def _windows_and_fields(self) -> BacktestConfig:
        if None not in (self.test_bars, self.step_bars) and self.test_bars != self.step_bars:
            raise ValueError(
                "test_bars and step_bars must be equal: the stitched out-of-sample series uses"
                " every test bar exactly once"
            )
        for direction, node in (self.eligibility or {}).items():
            bad = [f for f in _leaf_fields(node) if f not in ELIGIBILITY_FIELDS]
            if bad:
                raise ValueError(
                    f"eligibility.{direction}: field '{bad[0]}' is not in the features matrix"
                    f" (use one of {', '.join(ELIGIBILITY_FIELDS)})"
                )
        return self


class SleeveProfile(_Model):
    """A sleeve profile after the deep merge over `defaults`."""

    name: str
    kind: Literal["sleeve"] = "sleeve"
    description: str | None = None
    requires_network: bool = False
    provider: ProviderConfig = ProviderConfig()
    scan_provider: ScanProviderConfig | None = None
    scanners: list[str]
    timeframe: Literal["1d"] = "1d"
    history_bars: int | None = Field(default=None, gt=0)
    freshness_hours: float = Field(default=12, ge=0)
    scan: ScanConfig = ScanConfig()
    ingest: IngestConfig = IngestConfig()
    health: HealthConfig = HealthConfig()
    selection: SelectionConfig = SelectionConfig()
    optimization: OptimizationConfig = OptimizationConfig()
    backtest: BacktestConfig = BacktestConfig()


class SleeveRef(_Model):
    """One entry of a meta profile's `sleeves`: an atomic profile or a nested meta."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    profile: str | None = None
    meta: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SleeveRef:
        if (self.profile is None) == (self.meta is None):
            raise ValueError("a sleeve names exactly one of 'profile' or 'meta'")
        return self

    @property
    def target(self) -> str:
        return self.profile if self.profile is not None else str(self.meta)


class AllocationConfig(_Model):
    method: Literal["risk_parity", "hrp", "min_var", "equal_weight", "max_sharpe"] = "risk_parity"
    min_weight: float = Field(default=0.0, ge=0, le=1)
    max_weight: float = Field(default=1.0, gt=0, le=1)


class MetaProfile(_Model):
    name: str
    kind: Literal["meta"] = "meta"
    description: str | None = None
    sleeves: list[SleeveRef] = Field(min_length=1)
    allocation: AllocationConfig = AllocationConfig()
    allow_missing_sleeves: bool = False
    num_cpus: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _unique_ids(self) -> MetaProfile:
        ids = [s.id for s in self.sleeves]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate sleeve ids {dup}")
        n = len(self.sleeves)
        if n * self.allocation.min_weight > 1 + 1e-12 or n * self.allocation.max_weight < 1 - 1e-12:
            raise ValueError(
                f"allocation bounds [{self.allocation.min_weight}, {self.allocation.max_weight}]"
                f" are infeasible for {n} sleeves"
            )
        return self


Profile = SleeveProfile | MetaProfile
