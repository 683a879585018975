"""Fuzzed configuration (SPEC §3): whatever the YAML text or structure, loading either
succeeds or raises ConfigError with one short line; never another exception. The CLI turns
that into exit 2 and one stderr line, never a traceback (slow: real subprocess runs)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portflow.config import load_config
from portflow.config.loader import packaged_config_dir
from portflow.errors import ConfigError, one_line
from tests.conftest import portflow

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW_SETTINGS = settings(max_examples=25, deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=30), st.sampled_from(["1d", "LONG", "synthetic", "hrp",
                                                           "crypto_long", ">", "between"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12) | scalars, inner, max_size=4)),
    max_leaves=12)
yaml_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(["key: value", "- item", "  nested: [1, 2", "&a [x]", "*a",
                              "!!python/object:os.system", "? complex", ": v", "{", "}", "[",
                              "]", "'", '"', "\t", "---", "...", "%YAML 1.1", "!!binary AA==",
                              "<<: *a", "\\x00", "\udcff"]), max_size=12).map("\n".join),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    node[head] = _replace(node[head], rest, value)
    return node


def _assert_clear(exc: ConfigError) -> None:
    msg = str(exc)
    assert msg and one_line(msg) == msg, f"not one short line: {msg[:300]!r} ({len(msg)} chars)"


def _load(config_dir: Path) -> None:
    try:
        load_config(config_dir)
    except ConfigError as exc:
        _assert_clear(exc)


@pytest.fixture
def fresh_configs(tmp_path: Path) -> Path:
    return tmp_path


def _copy(root: Path, n: int) -> Path:
    dst = root / f"c{n}"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(packaged_config_dir(), dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


_counter = iter(range(10**9))


@SETTINGS
@given(text=yaml_text, target=st.sampled_from(["manifest.yaml", "scanners/liquid_crypto.yaml",
                                               "scanners/crypto_long.yaml", "scanners/new.yaml"]))
def test_random_yaml_text_loads_or_is_one_clear_config_error(
    fresh_configs: Path, text: str, target: str
) -> None:
    cfg = _copy(fresh_configs, next(_counter))
    (cfg / target).write_bytes(text.encode("utf-8", "surrogateescape"))
    _load(cfg)


@SETTINGS
@given(data=st.data(), target=st.sampled_from(["manifest.yaml", "scanners/liquid_crypto.yaml",
                                               "scanners/crypto_short.yaml"]))
def test_random_structures_load_or_are_one_clear_config_error(
    fresh_configs: Path, data: st.DataObject, target: str
) -> None:
    cfg = _copy(fresh_configs, next(_counter))
    tree = yaml.safe_load((cfg / target).read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(tree)))
        tree = _replace(tree, path, data.draw(values))
    (cfg / target).write_text(yaml.safe_dump(tree, sort_keys=False, allow_unicode=True))
    _load(cfg)


@SETTINGS
@given(depth=st.integers(2, 12), width=st.integers(2, 12))
def test_alias_bombs_are_refused_or_small(fresh_configs: Path, depth: int, width: int) -> None:
    lines = ["universe: synthetic-crypto", "junk:", "  - &a0 [lol, lol]"]
    lines += [f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, depth)]
    cfg = _copy(fresh_configs, next(_counter))
    (cfg / "scanners" / "bomb.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    _assert_clear(err.value)
    refused = "expands to" in str(err.value)
    if 2 * width ** (depth - 1) > 100_000:  # the leaves alone exceed the limit
        assert refused
    elif 4 * width ** depth < 100_000:  # a bound on every node: a small file is read as usual
        assert not refused and "junk: unknown key" in str(err.value)


def _cli_one_line(proc: Any) -> None:
    assert proc.returncode in (0, 2), proc.stderr[-500:]
    assert "Traceback" not in proc.stderr + proc.stdout
    if proc.returncode == 2:
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and len(lines[0]) <= 420, lines


@pytest.mark.slow
@SLOW_SETTINGS
@given(data=st.data(), target=st.sampled_from(["manifest.yaml", "scanners/liquid_crypto.yaml"]))
def test_the_cli_gives_exit_2_and_one_line_for_fuzzed_configs(
    fresh_configs: Path, data: st.DataObject, target: str
) -> None:
    cfg = _copy(fresh_configs, next(_counter))
    if data.draw(st.booleans()):
        (cfg / target).write_bytes(data.draw(yaml_text).encode("utf-8", "surrogateescape"))
    else:
        tree = yaml.safe_load((cfg / target).read_text())
        path = data.draw(st.sampled_from(_paths(tree)))
        (cfg / target).write_text(yaml.safe_dump(_replace(tree, path, data.draw(values))))
    _cli_one_line(portflow("profiles", "show", "crypto_long", data_dir=fresh_configs / "d",
                           config_dir=cfg))
