from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from portflow.config import load_config
from portflow.config.loader import deep_merge
from portflow.config.models import MetaProfile, SleeveProfile
from portflow.errors import ConfigError


def _edit(path: Path, fn) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_packaged_config_has_the_spec_profiles() -> None:
    cfg = load_config()
    for name in ("crypto_long", "crypto_short", "equities_long"):
        assert isinstance(cfg.profile(name), SleeveProfile)
    assert isinstance(cfg.profile("crypto_meta"), MetaProfile)
    assert cfg.expand("fractal_meta") == ["crypto_long", "crypto_short", "equities_long"]
    assert set(cfg.metas_containing("crypto_short")) == {"crypto_meta", "fractal_meta"}
    assert cfg.scanners["crypto_short"].direction == "SHORT"
    # the child inherits the parent's filters and overrides scalars
    assert cfg.scanners["crypto_short"].limit == 120
    assert {f.field for f in cfg.scanners["crypto_short"].filters} >= {"value_traded"}


def test_deep_merge_merges_mappings_and_replaces_scalars_and_lists() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    over = {"a": {"c": [3]}, "e": 2}
    assert deep_merge(base, over) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_profile_overrides_defaults(config_dir: Path) -> None:
    _edit(config_dir / "manifest.yaml",
          lambda d: d["profiles"]["crypto_long"].update({"selection": {"top_n": 5}}))
    prof = load_config(config_dir).sleeve("crypto_long")
    assert prof.selection.top_n == 5
    assert prof.selection.min_winners == 15  # still from defaults


def test_typo_in_profile_name_suggests_the_close_match() -> None:
    with pytest.raises(ConfigError, match="did you mean 'crypto_long'"):
        load_config().profile("crypto_lnog")


def test_unknown_key_names_file_and_key_path(config_dir: Path) -> None:
    _edit(config_dir / "manifest.yaml",
          lambda d: d["profiles"]["crypto_long"].update({"selection": {"top_m": 5}}))
    with pytest.raises(ConfigError) as err:
        load_config(config_dir)
    msg = str(err.value)
    assert "manifest.yaml" in msg and "profiles.crypto_long.selection.top_m" in msg
    assert "did you mean 'top_n'" in msg


def test_unknown_key_in_defaults_is_reported_under_defaults(config_dir: Path) -> None:
    _edit(config_dir / "manifest.yaml", lambda d: d["defaults"].update({"freshnes_hours": 3}))
    with pytest.raises(ConfigError, match=r"defaults\.freshnes_hours: unknown key"):
        load_config(config_dir)


def test_malformed_yaml_names_the_line(config_dir: Path) -> None:
    path = config_dir / "manifest.yaml"
    lines = path.read_text().splitlines()
    lines.insert(5, "  broken: [unclosed")
    path.write_text("\n".join(lines))
    with pytest.raises(ConfigError, match=r"manifest\.yaml:\d+: malformed YAML"):
        load_config(config_dir)


def test_scanner_extends_cycle_is_spelled_out(config_dir: Path) -> None:
    _edit(config_dir / "scanners" / "liquid_crypto.yaml", lambda d: d.update(extends="crypto_long"))
    with pytest.raises(ConfigError, match=r"cycle: .*crypto_long -> liquid_crypto -> crypto_long"):
        load_config(config_dir)


def test_unknown_scanner_field_lists_known_fields(config_dir: Path) -> None:
    _edit(config_dir / "scanners" / "crypto_long.yaml",
          lambda d: d.update(filters=[{"field": "valu_traded", "op": ">", "value": 1}]))
    with pytest.raises(ConfigError, match=r"unknown scanner field 'valu_traded'.*known fields"):
        load_config(config_dir)


def test_remove_filters_drops_inherited_filters_on_those_fields(config_dir: Path) -> None:
    _edit(config_dir / "scanners" / "crypto_long.yaml",
          lambda d: d.update(remove_filters=["value_traded"],
                             filters=[{"any": [{"field": "perf_3m", "op": ">", "value": 0},
                                               {"not": {"field": "adx", "op": "<", "value": 20}}]}]))
    scanner = load_config(config_dir).scanners["crypto_long"]
    dumped = [f.model_dump(by_alias=True) for f in scanner.filters]
    assert all(f.get("field") != "value_traded" for f in dumped)
    assert "any" in dumped[-1]


def test_remove_filters_on_a_field_not_inherited_is_an_error(config_dir: Path) -> None:
    _edit(config_dir / "scanners" / "crypto_long.yaml", lambda d: d.update(remove_filters=["adx"]))
    with pytest.raises(ConfigError, match="no inherited filter on \\['adx'\\]"):
        load_config(config_dir)


def test_meta_cycle_is_spelled_out(config_dir: Path) -> None:
    def cycle(d):  # type: ignore[no-untyped-def]
        d["profiles"]["crypto_meta"]["sleeves"].append({"id": "loop", "meta": "fractal_meta"})
    _edit(config_dir / "manifest.yaml", cycle)
    with pytest.raises(ConfigError, match=r"meta profile cycle: .*crypto_meta -> fractal_meta"):
        load_config(config_dir)


def test_meta_depth_is_limited(config_dir: Path) -> None:
    def deep(d):  # type: ignore[no-untyped-def]
        prev = "crypto_meta"
        for i in range(3):
            d["profiles"][f"m{i}"] = {"sleeves": [{"id": "x", "meta": prev},
                                                  {"id": "y", "profile": "crypto_long"}]}
            prev = f"m{i}"
    _edit(config_dir / "manifest.yaml", deep)
    with pytest.raises(ConfigError, match="deeper than 3 levels"):
        load_config(config_dir)


def test_meta_sleeve_naming_unknown_profile_suggests(config_dir: Path) -> None:
    _edit(config_dir / "manifest.yaml",
          lambda d: d["profiles"]["crypto_meta"]["sleeves"][0].update(profile="crypto_lon"))
    with pytest.raises(ConfigError, match="did you mean 'crypto_long'"):
        load_config(config_dir)


def test_yaml_tags_are_refused(config_dir: Path) -> None:
    path = config_dir / "manifest.yaml"
    path.write_text(path.read_text() + "\nx: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="YAML tag refused"):
        load_config(config_dir)


# -- errors found at load, attributed to the right file, one short line ------------------------


def _scanner_error(config_dir: Path, text: str, name: str = "bad") -> str:
    (config_dir / "scanners" / f"{name}.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(config_dir)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) <= 400, msg[:500]
    return msg


@pytest.mark.parametrize(
    ("filt", "words"),
    [
        ('{field: asset_class, op: ">", value: 5}', ["'>' does not apply to the text field 'asset_class'"]),
        ('{field: exchange, op: between, value: [a, b]}', ["text field 'exchange'"]),
        ('{field: asset_class, op: "==", value: 5}', ["'asset_class' is a text field", "5"]),
        ('{field: asset_class, op: in, value: [crypto, 3]}', ["text field", "3"]),
        ('{field: close, op: "==", value: high}', ["needs a finite number", "'high'"]),
        ('{field: volume, op: in, value: [1, "2"]}', ["needs a finite number", "'2'"]),
        ('{field: close, op: ">", value: .nan}', ["finite number"]),
        ('{field: close, op: ">", value: true}', ["finite number", "True"]),
        ('{field: close, op: ">", value: 1e6}', ["finite number", "1.0e+6"]),
        ('{field: close, op: in, value: []}', ["non-empty list"]),
        ('{field: close, op: not_in, value: 5}', ["non-empty list"]),
        ('{field: close, op: ">"}', ["needs 'field', 'op' and 'value'"]),
        ("{any: []}", ["filters[0].any", "non-empty", "nothing"]),
        ("{all: []}", ["filters[0].all", "non-empty", "everything"]),
        ("{not: {any: []}}", ["filters[0].not.any", "non-empty"]),
        ("{field: [close], op: '>', value: 1}", ["unknown scanner field ['close']"]),
        ("{field: close, op: [1], value: 1}", ["unknown op [1]"]),
    ],
)
def test_filter_values_are_checked_against_the_field_kind_at_load(
    config_dir: Path, filt: str, words: list[str]
) -> None:
    msg = _scanner_error(config_dir, f"universe: synthetic-crypto\nfilters:\n  - {filt}\n")
    assert "bad.yaml: filters[0]" in msg
    for w in words:
        assert w in msg, msg


def test_every_canonical_field_kind_matches_what_the_synthetic_provider_scans() -> None:
    from portflow.config.loader import FIELD_KINDS
    from portflow.providers.synthetic import SyntheticProvider

    scan = SyntheticProvider(sizes={"synthetic-crypto": 20}).scan(
        "synthetic-crypto", pd.Timestamp("2026-06-30", tz="UTC"))
    for field in scan.columns:
        if field in FIELD_KINDS:
            is_number = pd.api.types.is_numeric_dtype(scan[field])
            assert is_number == (FIELD_KINDS[field] == "number"), field


def test_an_error_in_a_parent_scanner_names_the_parent_file_in_plain_words(
    config_dir: Path,
) -> None:
    parent = config_dir / "scanners" / "liquid_crypto.yaml"
    for edit, words in (("direction: SIDEWAYS", ["direction", "'LONG' or 'SHORT'"]),
                        ("limit: -3", ["limit", "greater than 0"]),
                        ("sort: desc", ["sort", "valid dictionary"]),
                        ("sort: {field: valu_traded}", ["sort.field", "valu_traded"])):
        good = parent.read_text()
        parent.write_text(good + "\n" + edit + "\n")
        with pytest.raises(ConfigError) as err:
            load_config(config_dir)
        msg = str(err.value)
        parent.write_text(good)
        assert msg.startswith(f"{parent}: "), msg
        assert "instance of" not in msg and "SortSpec" not in msg
        for w in words:
            assert w in msg, msg
    # the child's own key is still the child's error
    child = config_dir / "scanners" / "crypto_long.yaml"
    child.write_text(child.read_text().replace("limit: 120", "limit: zero"))
    with pytest.raises(ConfigError, match=f"^{child}: limit: "):
        load_config(config_dir)


BOMB = "\n".join(["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol]"]
                 + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)])


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (f"universe: synthetic-crypto\nbomb:\n  {BOMB.replace(chr(10), chr(10) + '  ')}\n",
         ["expands to", "more than 100,000"]),
        ("universe: synthetic-crypto\nfilters:\n  - {field: close, op: '>', value: &v [*v]}\n",
         ["alias refers to the value that contains it"]),
        ("universe: " + "[" * 5000 + "]" * 5000 + "\n", ["nested too deeply"]),
        ("universe: !!python/name:os.system\n", ["YAML tag refused"]),
        ("universe: synthetic-crypto\nfilters: !!set {a}\n", ["filters: expected a list"]),
        ("- just\n- a list\n", ["holds a mapping"]),
        ("universe: synthetic-crypto\n? " + "x" * 100_000 + "\n: 1\n", ["unknown key"]),
    ],
)
def test_hostile_yaml_is_one_short_line(config_dir: Path, text: str, words: list[str]) -> None:
    msg = _scanner_error(config_dir, text)
    assert "bad.yaml" in msg
    for w in words:
        assert w in msg, msg


def test_a_config_file_that_is_not_utf8_is_named(config_dir: Path) -> None:
    (config_dir / "scanners" / "bad.yaml").write_bytes(b"universe: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not UTF-8 text"):
        load_config(config_dir)


# -- providers (registry options validated at load) ----------------------------------------


def test_provider_options_are_validated_at_load_naming_file_and_key(config_dir: Path) -> None:
    _edit(config_dir / "manifest.yaml", lambda d: d["defaults"]["provider"].update(latency_ms=-5))
    with pytest.raises(ConfigError, match=r"manifest\.yaml: defaults\.provider\.latency_ms: .*greater than or equal to 0"):
        load_config(config_dir)


def test_unknown_provider_option_and_unknown_provider(config_dir: Path) -> None:
    _edit(config_dir / "manifest.yaml",
          lambda d: d["profiles"]["crypto_long"].update(provider={"name": "synthetic", "sed": 3}))
    with pytest.raises(ConfigError, match=r"profiles\.crypto_long\.provider\.sed: unknown key"):
        load_config(config_dir)
    _edit(config_dir / "manifest.yaml",
          lambda d: d["profiles"]["crypto_long"].update(provider={"name": "fils", "path": "x"}))
    with pytest.raises(ConfigError, match=r"provider\.name: provider 'fils' is unknown; did you mean 'files'"):
        load_config(config_dir)


def test_a_provider_of_another_name_replaces_the_default_block(config_dir: Path) -> None:
    prof = load_config().sleeve("binance_spot_long")  # defaults carry synthetic's seed
    assert prof.provider.name == "ccxt" and "seed" not in prof.provider.options
    assert prof.provider.options["rate_limit_per_s"] == 5 and prof.provider.options["max_retries"] == 5


def test_files_paths_are_relative_to_the_config_dir(config_dir: Path) -> None:
    prof = load_config(config_dir).sleeve("files_example")
    assert prof.provider.options["path"] == str((config_dir / "sample_files").resolve())


def test_scan_provider_and_universes_are_checked(config_dir: Path) -> None:
    prof = load_config(config_dir).sleeve("tv_crypto_long")
    assert prof.scan_provider is not None and prof.scan_provider.bars_universe == "binance-spot-usdt"
    _edit(config_dir / "manifest.yaml",
          lambda d: d["profiles"]["tv_crypto_long"]["scan_provider"].pop("bars_universe"))
    with pytest.raises(ConfigError, match=r"scan_provider\.bars_universe: missing"):
        load_config(config_dir)
    _edit(config_dir / "manifest.yaml", lambda d: d["profiles"]["tv_crypto_long"].update(
        provider={"name": "tradingview"}, scan_provider=None))
    with pytest.raises(ConfigError, match="has no OHLCV history; name it as the profile's scan_provider"):
        load_config(config_dir)


def test_a_scanner_universe_of_another_provider_fails_at_load(config_dir: Path) -> None:
    _edit(config_dir / "scanners" / "binance_spot_base.yaml",
          lambda d: d.update(universe="bybit-spot-usdt"))
    with pytest.raises(ConfigError, match=r"binance_spot_long\.yaml: universe: .*provider's exchange is 'binance'"):
        load_config(config_dir)
