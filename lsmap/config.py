"""Reading the workflow configuration outside Snakemake, with the same schema as the Snakefile."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from lsmap.errors import LsmapError

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate against the JSON schema and fill defaults; one line naming the bad key on failure."""
    from snakemake.utils import validate

    try:
        validate(config, str(SCHEMA_PATH), set_default=True)
    except Exception as exc:  # snakemake wraps jsonschema's ValidationError in WorkflowError
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = next((line for line in lines if "Error validating config" not in line), str(exc))
        key = _invalid_key(exc)
        raise LsmapError(f"{source}: invalid configuration{f' at {key}' if key else ''}: {reason}") from exc
    return config


def _invalid_key(exc: BaseException) -> str:
    """Dotted path of the offending key ('mapping.tile_size') from the jsonschema error in the chain."""
    while exc is not None:
        path = getattr(exc, "absolute_path", None)
        if path:
            return ".".join(str(part) for part in path)
        exc = exc.__cause__ or exc.__context__
    return ""


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LsmapError(f"{path}: cannot read configuration ({str(exc).splitlines()[0]})") from exc
    if not isinstance(config, dict):
        raise LsmapError(f"{path}: configuration must be a YAML mapping")
    return validate_config(config, str(path))
