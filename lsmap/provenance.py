"""Provenance shared by the scene and region products: the creation time and the flat metadata items
written into GeoTIFFs and GeoPackages. A light module (no torch), so that the region summary can use
it without importing the mapping stage."""

from __future__ import annotations

import datetime as dt


def utc_now() -> str:
    """Current UTC time, ISO 8601 with seconds and offset ('2024-05-01T10:00:00+00:00')."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def provenance_tags(provenance: dict) -> dict[str, str]:
    """GeoTIFF / GeoPackage metadata items (flat strings) of a provenance record."""
    return {
        "LSMAP_VERSION": provenance["lsmap_version"],
        "LSMAP_CHECKPOINT": provenance["checkpoint"],
        "LSMAP_CHECKPOINT_SHA256": provenance["checkpoint_sha256"],
        "LSMAP_CONFIG_SHA256": provenance["config_sha256"],
        "LSMAP_SCENE_IDS": ",".join(s["scene_id"] for s in provenance["scenes"]),
        "LSMAP_CREATED_UTC": provenance["created_utc"],
    }
