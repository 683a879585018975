"""Configuration: pydantic models and YAML loading (manifest, profiles, scanners)."""

from portflow.config.loader import Config, calendar_defaults, config_hash, load_config

__all__ = ["Config", "calendar_defaults", "config_hash", "load_config"]
