"""The sleeve tree of a meta profile, read from its resolved configuration.

A meta profile's resolved config (:meth:`portflow.context.Context.resolved`) nests the
resolved config of every sleeve under `sleeve_configs`, so one run's recorded config holds the
whole tree. A node is a *leaf* (a sleeve profile: one Phase 2 run) or a *meta* (a nested meta
profile: a meta run of its own). Cycles and depth (at most 3 meta levels) are rejected when the
configuration is loaded (:mod:`portflow.config.loader`), so the tree here is finite.

Paths name a node from the root: ``crypto/long`` is sleeve ``long`` of the nested meta
``crypto``; the root's path is empty. The workspace of the node at path ``a/b`` is
``runs/<META_RUN_ID>/sleeves/a/sleeves/b/``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SleeveNode:
    """One node. config: its resolved configuration (a sleeve's or a meta's)."""

    id: str
    path: str
    profile: str
    config: Mapping[str, Any]
    children: tuple[SleeveNode, ...] = ()

    @property
    def is_meta(self) -> bool:
        return "sleeves" in self.config

    @property
    def allocation(self) -> Mapping[str, Any]:
        return self.config["allocation"]

    @property
    def allow_missing(self) -> bool:
        return bool(self.config.get("allow_missing_sleeves", False))

    def leaves(self) -> list[SleeveNode]:
        """Every leaf under this node, depth first in manifest order."""
        if not self.is_meta:
            return [self]
        return [leaf for c in self.children for leaf in c.leaves()]

    def metas_bottom_up(self) -> Iterator[SleeveNode]:
        """Every meta node under (and including) this one, children before their parent."""
        for c in self.children:
            if c.is_meta:
                yield from c.metas_bottom_up()
        if self.is_meta:
            yield self

    def metas_top_down(self) -> Iterator[SleeveNode]:
        if self.is_meta:
            yield self
        for c in self.children:
            if c.is_meta:
                yield from c.metas_top_down()


def plan(profile: str, resolved: Mapping[str, Any]) -> SleeveNode:
    """The tree of meta profile `profile` from its resolved configuration."""
    return _node("", "", profile, resolved)


def _node(sleeve_id: str, path: str, profile: str, cfg: Mapping[str, Any]) -> SleeveNode:
    if "sleeves" not in cfg:
        return SleeveNode(sleeve_id, path, profile, cfg)
    kids = tuple(
        _node(ref["id"], f"{path}/{ref['id']}" if path else ref["id"],
              ref.get("profile") or ref["meta"], cfg["sleeve_configs"][ref["id"]])
        for ref in cfg["sleeves"]
    )
    return SleeveNode(sleeve_id, path, profile, cfg, kids)
