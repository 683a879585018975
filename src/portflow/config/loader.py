"""Load and resolve configuration: manifest, profiles, scanners (SPEC §3).

1. Pick the config dir: `--config-dir` / `PORTFLOW_CONFIG_DIR`, else `./configs` when present,
   else the configs packaged with portflow (so a fresh install runs anywhere).
2. Read YAML with `yaml.safe_load` only (configs are data, never code: tags beyond the safe
   ones are refused). A malformed file is a `ConfigError` naming the file and line; so is a
   file whose aliases expand to more than `MAX_YAML_VALUES` values (an alias bomb would
   otherwise explode in validation and in error messages) or refer to themselves.
3. Scanners: resolve each `extends` chain (cycles rejected with the chain spelled out), merge
   parent → child (child scalars win; filters concatenate; `remove_filters: [field, ...]`
   drops every inherited filter on those fields), then validate; an error in an inherited key
   names the file that wrote it. Each filter is checked in its own file against the kind of
   its field (`FIELD_KINDS`: numbers compare with numbers, text only with ==, !=, in and
   not_in); an unknown field fails with the list of known ones; an empty `all`/`any`/`in`/
   `not_in` list is refused (it would match everything or nothing without saying so).
4. Profiles: a sleeve profile is deep-merged over `defaults` (mappings merge, scalars and lists
   replace; a `provider` block whose `name` differs from the default's replaces it whole); a
   meta profile lists sleeves. Metas are checked for unknown references, cycles (spelled
   out) and nesting depth (at most 3 meta levels).
5. Providers: a sleeve's `provider` (bars) and optional `scan_provider` (discovery) blocks are
   validated against the provider's own options model from the registry — an unknown
   provider or option, or a bad value, fails here — and replaced by the validated options
   (defaults filled in, relative paths made absolute against the config dir). Each scanner's
   universe must belong to the provider that scans it, `bars_universe` to the bar provider,
   and the bar provider must have OHLCV history.
6. Every profile and scanner is validated at load time, so a typo anywhere fails fast with
   `file: key.path: message` and a close-match suggestion; values quoted in a message are
   shortened, so an error is one line of at most a few hundred characters.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from portflow import clock
from portflow.config import models as m
from portflow.errors import ConfigError, one_line, short, suggest
from portflow.providers import registry
from portflow.providers.base import SCAN_FIELDS

MAX_META_DEPTH = 3
MAX_YAML_VALUES = 100_000
KNOWN_SCAN_FIELDS = (*SCAN_FIELDS, "sector", "symbol")
TEXT_FIELDS = frozenset({"asset_class", "exchange", "sector", "symbol"})
#: the kind of every canonical scanner field: what its values compare with
FIELD_KINDS = {f: "text" if f in TEXT_FIELDS else "number" for f in KNOWN_SCAN_FIELDS}
_FILTER_OPS = (">", ">=", "<", "<=", "==", "!=", "in", "not_in", "between")
_ORDER_OPS = (">", ">=", "<", "<=", "between")
_NUMBER_HINT = " (write exponents with a sign, e.g. 1.0e+6, or plain digits)"


def packaged_config_dir() -> Path:
    return Path(str(resources.files("portflow") / "configs"))


def resolve_config_dir(explicit: str | os.PathLike[str] | None) -> Path:
    """Step 1: the config dir in force (explicit, ./configs, or the packaged one)."""
    if explicit:
        path = Path(explicit)
        if not (path / "manifest.yaml").is_file():
            raise ConfigError(
                f"config dir '{path}' has no manifest.yaml; run 'portflow init' to create one"
                " or point --config-dir / PORTFLOW_CONFIG_DIR at a folder with manifest.yaml"
            )
        return path
    local = Path("configs")
    if (local / "manifest.yaml").is_file():
        return local
    return packaged_config_dir()


def read_yaml(path: Path) -> Any:
    """Step 2: safe-load one YAML file, with the line of a syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}); check the path") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = one_line(str(getattr(exc, "problem", None) or exc), 160)
        if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
            raise ConfigError(f"{where}: YAML tag refused ({problem}); configs are plain data:"
                              " remove the tag") from None
        raise ConfigError(f"{where}: malformed YAML ({problem}); fix the syntax there") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config; flatten it") from None
    _check_expansion(data, path)
    return data


def _check_expansion(data: Any, path: Path) -> None:
    """Step 2: refuse aliases that expand past MAX_YAML_VALUES values or refer to themselves.
    PyYAML shares an aliased node instead of copying it, so sizes are memoised by identity:
    the walk costs the distinct nodes, however far the aliases would expand."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, dict | list):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{path}: an alias refers to the value that contains it;"
                              " write the value out instead")
        active.add(key)
        children = list(node.values()) if isinstance(node, dict) else node
        sizes[key] = 1 + sum(size(c) for c in children)
        active.discard(key)
        return sizes[key]

    try:
        total = size(data)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config; flatten it") from None
    if total > MAX_YAML_VALUES:
        raise ConfigError(
            f"{path}: expands to {total:,} values, more than {MAX_YAML_VALUES:,} (aliases"
            " repeated inside aliases, a YAML bomb?); write the values out"
        )


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge recursively; scalars and lists in `over` replace those in `base`."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _all_field_names() -> set[str]:
    names: set[str] = set()
    todo: list[type[BaseModel]] = [m.SleeveProfile, m.MetaProfile, m.Scanner]
    seen: set[type[BaseModel]] = set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            names.add(info.alias or name)
            ann = info.annotation
            for sub in getattr(ann, "__args__", ()) or (ann,):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    todo.append(sub)
    return names


_MODEL_NAMES = {"LeafFilter", "AllFilter", "AnyFilter", "NotFilter"}


def _validation_message(source: str, prefix: str, exc: ValidationError) -> str:
    """`file: key.path: message` of the first error, without pydantic's internals (union
    member names, validator names, "or instance of <Model>")."""
    err = exc.errors()[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in _MODEL_NAMES))]
    parts = [*(prefix.split(".") if prefix else []), *(_key(p) for p in loc)]
    where = ".".join(parts)
    if err["type"] == "extra_forbidden":
        key = _key(err["loc"][-1])
        return f"{source}: {where}: unknown key{suggest(key, _all_field_names())}"
    msg = re.sub(r" or instance of \w+", "", str(err["msg"])).removeprefix("Value error, ")
    return f"{source}: {where}: {one_line(msg, 200)}"


def _key(part: Any) -> str:
    """A key of a location, shortened and printable (YAML keys may be anything: huge, or
    holding line breaks that would split the one-line error)."""
    text = str(part)
    if not text.isprintable():
        text = repr(text)
    return text if len(text) <= 40 else short(text, 40)


def _parse_filter(node: Any, where: str) -> dict[str, Any]:
    """Check one filter node (leaf or all/any/not) and return it normalised."""
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: a filter is a mapping {{field, op, value}} or all/any/not")
    keys = {str(k) for k in node}
    if keys & {"all", "any"} and len(keys) == 1:
        (key,) = keys
        items = node[key]
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{where}.{key}: expected a non-empty list of filters (an empty"
                              f" '{key}' would match {'everything' if key == 'all' else 'nothing'})")
        return {key: [_parse_filter(x, f"{where}.{key}[{i}]") for i, x in enumerate(items)]}
    if keys == {"not"}:
        return {"not": _parse_filter(node["not"], f"{where}.not")}
    unknown = keys - {"field", "op", "value"}
    if unknown:
        key = _key(sorted(unknown)[0])
        raise ConfigError(
            f"{where}: unknown filter key '{key}'"
            f"{suggest(key, ['field', 'op', 'value', 'all', 'any', 'not'])}"
        )
    if {"field", "op", "value"} - keys:
        raise ConfigError(f"{where}: a filter needs 'field', 'op' and 'value'")
    field, op, value = node["field"], node["op"], node["value"]
    if not isinstance(field, str) or field not in FIELD_KINDS:
        raise ConfigError(
            f"{where}: unknown scanner field {short(field)}{suggest(str(field), KNOWN_SCAN_FIELDS)}"
            f" (known fields: {', '.join(KNOWN_SCAN_FIELDS)})"
        )
    if not isinstance(op, str) or op not in _FILTER_OPS:
        raise ConfigError(f"{where}: unknown op {short(op)} (known ops: {' '.join(_FILTER_OPS)})")
    _check_value(field, op, value, where)
    return {"field": field, "op": op, "value": value}


def _check_value(field: str, op: str, value: Any, where: str) -> None:
    """The value shape of `op` and the kind of `field` (step 3)."""
    kind = FIELD_KINDS[field]
    if kind == "text" and op in _ORDER_OPS:
        raise ConfigError(f"{where}: op '{op}' does not apply to the text field '{field}';"
                          " use ==, !=, in or not_in")
    if op == "between":
        if not (isinstance(value, list) and len(value) == 2):
            raise ConfigError(f"{where}: op 'between' needs a [low, high] list, got {short(value)}")
        items = value
    elif op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}: op '{op}' needs a non-empty list, got {short(value)}")
        items = value
    else:
        items = [value]
    if kind == "number":
        bad = [v for v in items if isinstance(v, bool) or not isinstance(v, int | float)
               or not math.isfinite(v)]
        if bad:
            raise ConfigError(f"{where}: op '{op}' on '{field}' needs a finite number, got"
                              f" {short(bad[0])}{_NUMBER_HINT}")
    elif any(not isinstance(v, str) for v in items):
        bad = next(v for v in items if not isinstance(v, str))
        raise ConfigError(f"{where}: '{field}' is a text field; compare it with text, got"
                          f" {short(bad)}")


def _filter_fields(node: dict[str, Any]) -> set[str]:
    if "field" in node:
        return {node["field"]}
    if "not" in node:
        return _filter_fields(node["not"])
    key = "all" if "all" in node else "any"
    return set().union(*(_filter_fields(x) for x in node[key])) if node[key] else set()


def _drop_fields(node: dict[str, Any], fields: set[str]) -> dict[str, Any] | None:
    """Remove every leaf on `fields`; combinators left empty disappear."""
    if "field" in node:
        return None if node["field"] in fields else node
    if "not" in node:
        inner = _drop_fields(node["not"], fields)
        return None if inner is None else {"not": inner}
    key = "all" if "all" in node else "any"
    kept = [y for y in (_drop_fields(x, fields) for x in node[key]) if y is not None]
    return {key: kept} if kept else None


@dataclass(frozen=True)
class Config:
    """The whole configuration, validated. Build it with :func:`load_config`."""

    config_dir: Path
    profiles: dict[str, m.Profile]
    scanners: dict[str, m.Scanner]

    def profile(self, name: str) -> m.Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise ConfigError(
                f"profile '{name}' not found in {self.config_dir / 'manifest.yaml'}"
                f"{suggest(name, self.profiles)} (see 'portflow profiles list')"
            ) from None

    def sleeve(self, name: str) -> m.SleeveProfile:
        prof = self.profile(name)
        if not isinstance(prof, m.SleeveProfile):
            raise ConfigError(
                f"profile '{name}' is a meta profile; this command takes a sleeve profile"
                f" (one of: {', '.join(self.sleeve_names())}) or use flow-meta-production"
            )
        return prof

    def meta(self, name: str) -> m.MetaProfile:
        prof = self.profile(name)
        if not isinstance(prof, m.MetaProfile):
            raise ConfigError(
                f"profile '{name}' is a sleeve profile; flow-meta-production takes a meta profile"
                f" (one of: {', '.join(n for n, p in self.profiles.items() if p.kind == 'meta')})"
            )
        return prof

    def sleeve_names(self) -> list[str]:
        return [n for n, p in self.profiles.items() if isinstance(p, m.SleeveProfile)]

    def expand(self, name: str) -> list[str]:
        """The sleeve profiles under `name` (itself for a sleeve), in order, without repeats."""
        prof = self.profile(name)
        if isinstance(prof, m.SleeveProfile):
            return [name]
        out: list[str] = []
        for ref in prof.sleeves:
            for sub in self.expand(ref.target):
                if sub not in out:
                    out.append(sub)
        return out

    def metas_containing(self, sleeve: str) -> list[str]:
        return [
            n for n, p in self.profiles.items() if p.kind == "meta" and sleeve in self.expand(n)
        ]

    def resolved(self, name: str) -> dict[str, Any]:
        """JSON-ready resolved configuration of a profile, with its scanners inlined."""
        prof = self.profile(name)
        out: dict[str, Any] = prof.model_dump(mode="json", by_alias=True)
        if isinstance(prof, m.SleeveProfile):
            out["scanner_configs"] = {
                s: self.scanners[s].model_dump(mode="json", by_alias=True) for s in prof.scanners
            }
        else:
            out["sleeve_configs"] = {r.id: self.resolved(r.target) for r in prof.sleeves}
        return out


def config_hash(resolved: dict[str, Any]) -> str:
    blob = json.dumps(resolved, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _load_scanners(config_dir: Path) -> dict[str, m.Scanner]:
    folder = config_dir / "scanners"
    raw: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        data = read_yaml(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a scanner file holds a mapping of keys")
        raw[path.stem] = (path, data)

    resolved: dict[str, dict[str, Any]] = {}
    origins: dict[str, dict[str, str]] = {}  # scanner -> top-level key -> file that set it

    def resolve(name: str, chain: list[str]) -> dict[str, Any]:
        if name in resolved:
            return resolved[name]
        if name in chain:
            cycle = " -> ".join([*chain[chain.index(name) :], name])
            raise ConfigError(f"{folder}: scanner 'extends' cycle: {cycle}; break the chain")
        if name not in raw:
            where = f"{raw[chain[-1]][0]}: extends" if chain else "scanner"
            raise ConfigError(f"{where}: scanner '{name}' not found{suggest(name, raw)}")
        path, data = raw[name]
        data = dict(data)
        src = str(path)
        filters = data.pop("filters", []) or []
        if isinstance(filters, dict):
            filters = [filters]
        if not isinstance(filters, list):
            raise ConfigError(f"{src}: filters: expected a list of filters")
        own = [_parse_filter(f, f"{src}: filters[{i}]") for i, f in enumerate(filters)]
        remove = data.pop("remove_filters", []) or []
        if not isinstance(remove, list) or not all(isinstance(x, str) for x in remove):
            raise ConfigError(f"{src}: remove_filters: expected a list of field names")
        parent_name = data.pop("extends", None)
        base: dict[str, Any] = {"filters": []}
        origin = {}
        if parent_name is not None:
            if not isinstance(parent_name, str):
                raise ConfigError(f"{src}: extends: expected a scanner name, got {short(parent_name)}")
            parent = resolve(parent_name, [*chain, name])
            origin = dict(origins[parent_name])
            base = {k: v for k, v in parent.items() if k not in ("name", "description")}
            inherited = set().union(*(_filter_fields(f) for f in base["filters"]))
            missing = sorted(set(remove) - inherited)
            if missing:
                raise ConfigError(
                    f"{src}: remove_filters: no inherited filter on {missing}"
                    f" (inherited fields: {sorted(inherited)})"
                )
            kept = [_drop_fields(f, set(remove)) for f in base["filters"]]
            base["filters"] = [f for f in kept if f is not None]
        elif remove:
            raise ConfigError(f"{src}: remove_filters needs 'extends' (nothing is inherited)")
        merged = deep_merge(base, data)
        merged["filters"] = base["filters"] + own
        merged["name"] = name
        resolved[name] = merged
        origins[name] = {**origin, **{str(k): src for k in data}}
        return merged

    out: dict[str, m.Scanner] = {}
    for name in raw:
        data = resolve(name, [])
        try:
            out[name] = m.Scanner.model_validate(data)
        except ValidationError as exc:
            top = str(exc.errors()[0]["loc"][0]) if exc.errors()[0]["loc"] else ""
            src = origins[name].get(top, str(raw[name][0]))
            raise ConfigError(_validation_message(src, "", exc)) from None
        sort = out[name].sort
        if sort is not None and sort.field not in KNOWN_SCAN_FIELDS:
            fld = sort.field
            raise ConfigError(
                f"{origins[name].get('sort', raw[name][0])}: sort.field: unknown scanner field"
                f" {short(fld)}{suggest(fld, KNOWN_SCAN_FIELDS)}"
            )
    return out


def load_config(config_dir: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate the whole configuration (steps 1-5 of the module docstring)."""
    folder = resolve_config_dir(config_dir)
    manifest_path = folder / "manifest.yaml"
    src = str(manifest_path)
    manifest = read_yaml(manifest_path)
    if not isinstance(manifest, dict):
        raise ConfigError(f"{src}: expected a mapping with 'defaults' and 'profiles'")
    extra = {_key(k) for k in manifest} - {"defaults", "profiles"}
    if extra:
        key = sorted(extra)[0]
        raise ConfigError(f"{src}: {key}: unknown key{suggest(key, ['defaults', 'profiles'])}")
    defaults = manifest.get("defaults") or {}
    raw_profiles = manifest.get("profiles") or {}
    if not isinstance(defaults, dict) or not isinstance(raw_profiles, dict):
        raise ConfigError(f"{src}: 'defaults' and 'profiles' must be mappings")
    scanners = _load_scanners(folder)

    profiles: dict[str, m.Profile] = {}
    for name, body in raw_profiles.items():
        if not isinstance(name, str) or not isinstance(body, dict):
            raise ConfigError(f"{src}: profiles.{_key(name)}: expected a profile name with a"
                              " mapping of its keys")
        try:
            if "sleeves" in body:
                profiles[name] = m.MetaProfile.model_validate({**body, "name": name})
            else:
                merged = deep_merge(_provider_base(defaults, body), body)
                sleeve = m.SleeveProfile.model_validate({**merged, "name": name})
                profiles[name] = _check_providers(sleeve, body, src, folder, scanners)
        except ValidationError as exc:
            loc = exc.errors()[0]["loc"]
            in_profile = _has_path(body, loc)
            prefix = f"profiles.{name}" if in_profile or "sleeves" in body else "defaults"
            raise ConfigError(_validation_message(src, prefix, exc)) from None

    for name, prof in profiles.items():
        if isinstance(prof, m.SleeveProfile):
            for s in prof.scanners:
                if s not in scanners:
                    raise ConfigError(
                        f"{src}: profiles.{name}.scanners: scanner '{s}' not found in"
                        f" {folder / 'scanners'}{suggest(s, scanners)}"
                    )
        else:
            for i, ref in enumerate(prof.sleeves):
                target = ref.target
                if target not in profiles and target not in raw_profiles:
                    raise ConfigError(
                        f"{src}: profiles.{name}.sleeves[{i}]: profile '{target}' not found"
                        f"{suggest(target, raw_profiles)}"
                    )
    for name, prof in profiles.items():
        if isinstance(prof, m.MetaProfile):
            _check_meta(name, profiles, src, [name])
    return Config(config_dir=folder, profiles=profiles, scanners=scanners)


def _provider_base(defaults: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Step 4: the defaults a profile merges over, without the default provider block when
    the profile names another provider (its options would be another provider's)."""
    default_block = defaults.get("provider")
    block = body.get("provider")
    if isinstance(default_block, dict) and isinstance(block, dict) and "name" in block \
            and block["name"] != default_block.get("name", "synthetic"):
        return {k: v for k, v in defaults.items() if k != "provider"}
    return defaults


def _check_providers(
    prof: m.SleeveProfile, body: dict[str, Any], src: str, folder: Path,
    scanners: dict[str, m.Scanner],
) -> m.SleeveProfile:
    """Step 5 for one sleeve profile; returns it with the validated provider options."""
    where = f"profiles.{prof.name}"

    def options(key: str, block: m.ProviderConfig) -> BaseModel:
        prefix = where if _has_path(body, (key,)) else "defaults"
        try:
            return registry.validate_options(block.name, block.options, folder)
        except ValidationError as exc:
            raise ConfigError(_validation_message(src, f"{prefix}.{key}", exc)) from None
        except ConfigError as exc:
            raise ConfigError(f"{src}: {prefix}.{key}.name: {exc}") from None

    bars = options("provider", prof.provider)
    bar_spec = registry.spec(prof.provider.name)
    update: dict[str, Any] = {
        "provider": m.ProviderConfig(name=prof.provider.name, **bars.model_dump())}
    if not bar_spec.bars:
        raise ConfigError(
            f"{src}: {where}.provider.name: '{bar_spec.name}' has no OHLCV history; name it as"
            f" the profile's scan_provider (discovery) beside a bar provider such as ccxt"
        )
    scan_spec, scan_opts = bar_spec, bars
    if prof.scan_provider is not None:
        sp = prof.scan_provider
        scan_opts = options("scan_provider", sp)
        scan_spec = registry.spec(sp.name)
        universe = sp.bars_universe or bar_spec.single_universe
        if universe is None:
            raise ConfigError(
                f"{src}: {where}.scan_provider.bars_universe: missing; name the"
                f" {bar_spec.name} universe the scanned symbols are looked up in"
            )
        err = bar_spec.universe_error(bars, universe)
        if err:
            raise ConfigError(f"{src}: {where}.scan_provider.bars_universe: {err}")
        update["scan_provider"] = m.ScanProviderConfig(
            name=sp.name, symbol_map=sp.symbol_map, bars_universe=universe,
            **scan_opts.model_dump())
    for s in prof.scanners:
        scanner = scanners.get(s)
        err = None if scanner is None else scan_spec.universe_error(scan_opts, scanner.universe)
        if err:
            raise ConfigError(
                f"{folder / 'scanners' / (s + '.yaml')}: universe: {err} (scanner of profile"
                f" '{prof.name}', scanned by its {scan_spec.name} provider)"
            )
    return prof.model_copy(update=update)


def _has_path(body: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = body
    for part in loc:
        if (isinstance(node, dict) and part in node) or (isinstance(node, list) and isinstance(part, int) and part < len(node)):
            node = node[part]
        else:
            return False
    return True


def _check_meta(name: str, profiles: dict[str, m.Profile], src: str, chain: list[str]) -> None:
    prof = profiles[name]
    if len(chain) > MAX_META_DEPTH:
        raise ConfigError(
            f"{src}: profiles.{chain[0]}: meta nesting {' -> '.join(chain)} is deeper than"
            f" {MAX_META_DEPTH} levels; flatten it"
        )
    assert isinstance(prof, m.MetaProfile)
    for i, ref in enumerate(prof.sleeves):
        target = ref.target
        sub = profiles[target]
        if ref.profile is not None and not isinstance(sub, m.SleeveProfile):
            raise ConfigError(
                f"{src}: profiles.{name}.sleeves[{i}]: '{target}' is a meta profile;"
                " write 'meta: " + target + "'"
            )
        if ref.meta is not None:
            if not isinstance(sub, m.MetaProfile):
                raise ConfigError(
                    f"{src}: profiles.{name}.sleeves[{i}]: '{target}' is a sleeve profile;"
                    " write 'profile: " + target + "'"
                )
            if target in chain:
                cycle = " -> ".join([*chain[chain.index(target) :], target])
                raise ConfigError(f"{src}: meta profile cycle: {cycle}; break the cycle")
            _check_meta(target, profiles, src, [*chain, target])


def calendar_defaults(calendar: str) -> dict[str, float]:
    """Values that default by calendar (SPEC §3, §6): 24/7 crypto vs exchange sessions."""
    if calendar == "24/7":
        return {
            "history_bars": 1500,
            "lookback_bars": 365,
            "periods_per_year": clock.periods_per_year(calendar),
            "train_bars": 180,
            "test_bars": 14,
            "step_bars": 14,
            "commission_bps": 4,
            "slippage_bps": 10,
        }
    return {
        "history_bars": 1000,
        "lookback_bars": 252,
        "periods_per_year": clock.periods_per_year(calendar),
        "train_bars": 252,
        "test_bars": 21,
        "step_bars": 21,
        "commission_bps": 1,
        "slippage_bps": 5,
    }
