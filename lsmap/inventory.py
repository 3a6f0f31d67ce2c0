"""The cumulative landslide inventory of a region: ``results/<region>/inventory.gpkg``.

Acquisitions arrive over days and overlap. Every scene adds its landslide polygons (each keeps its
``scene_id`` and ``acquired`` date) and its *footprint*, the area it observed (the valid pixels of
its mask, the "footprint" layer of map_scene). The current inventory is recomputed from all observations by one
deterministic rule, so the result does not depend on the order in which scenes arrived (a late
delivery of an older acquisition lands where it belongs) and re-adding a scene changes nothing.

The rule, in three steps (a *time* rule for one cumulative inventory; the region summary of
``lsmap.stats.merge_region_polygons`` instead dissolves every overlap of one mapping campaign):

1. **Same landslide.** Two polygons from different scenes are observations of one landslide when
   they overlap by at least ``match_min_overlap`` (default 0.2) of the smaller one's area; chains of
   such overlaps form one landslide. A landslide seen in several acquisitions is counted once.
2. **Which observation stands: the newest clear view.** A scene *viewed* a landslide when its
   footprint covers at least ``view_min_coverage`` (default 0.5) of the landslide's extent (the
   union of its observations). The newest acquisition date among the scenes that viewed it decides:
   the polygons of that date stand (several scenes of that date, e.g. adjacent scenes of one pass,
   are merged into one polygon); if no scene of that date mapped it, the newest view shows no
   landslide there and the landslide leaves the current layer (status ``not_redetected``). A scene
   that saw only a sliver of a landslide at its edge (< ``view_min_coverage``) does not replace a
   full view; when no scene viewed it fully, the newest date that mapped it stands.
3. **Nothing is lost.** Every observation that does not stand goes to the ``history`` layer with its
   status (``superseded`` by a newer view, ``partial_view`` at a scene edge, ``not_redetected``) and
   the scene(s) that took its place.

Layers of the GeoPackage (one projected CRS, fixed by the first scene: areas in m²):

    landslides    current inventory, one row per landslide (landslide_id, scene_id, acquired,
                  first_scene_id, first_acquired, n_observations, area_m2, perimeter_m, prob_mean,
                  prob_max, centroid_lon, centroid_lat)
    history       observations that do not stand (obs_id, scene_id, acquired, ..., landslide_id,
                  status, superseded_by)
    observations  every polygon of every scene as mapped (the input of the rule)
    footprints    one row per scene: scene_id, acquired, area_m2, added

``landslide_id`` is the ``obs_id`` (``<scene_id>/<polygon id>``) of a landslide's first
observation, so it stays the same when later scenes re-observe the landslide.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from lsmap.errors import LsmapError
from lsmap.fileio import atomic_output

LAYER_CURRENT = "landslides"
LAYER_HISTORY = "history"
LAYER_OBSERVATIONS = "observations"
LAYER_FOOTPRINTS = "footprints"

# Per-polygon attributes carried from a scene's landslides.gpkg into the inventory when present.
OBSERVATION_ATTRIBUTES = ("area_m2", "perimeter_m", "prob_mean", "prob_max")


@dataclass(frozen=True)
class InventoryRules:
    """Thresholds of the overlap rule (fractions of an area, 0..1)."""

    match_min_overlap: float = 0.2
    view_min_coverage: float = 0.5

    def __post_init__(self) -> None:
        for name in ("match_min_overlap", "view_min_coverage"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise LsmapError(f"inventory rule {name} must be in (0, 1], got {value}")


@dataclass
class InventoryUpdate:
    """What adding one scene changed in the current layer."""

    scene_id: str
    landslides_before: int
    landslides_after: int
    area_before_m2: float
    area_after_m2: float
    new_landslide_ids: list[str] = field(default_factory=list)
    removed_landslide_ids: list[str] = field(default_factory=list)

    @property
    def area_added_m2(self) -> float:
        return self.area_after_m2 - self.area_before_m2


# -- reading and writing --------------------------------------------------------------------------


def read_inventory(path: str | os.PathLike) -> dict[str, gpd.GeoDataFrame]:
    """All four layers of an inventory (empty frames when the file does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        layers = set(pyogrio.list_layers(path)[:, 0])
        missing = {LAYER_CURRENT, LAYER_HISTORY, LAYER_OBSERVATIONS, LAYER_FOOTPRINTS} - layers
        if missing:
            raise LsmapError(f"{path}: not an lsmap inventory (missing layers {sorted(missing)})")
        return {layer: gpd.read_file(path, layer=layer) for layer in (LAYER_CURRENT, LAYER_HISTORY, LAYER_OBSERVATIONS, LAYER_FOOTPRINTS)}
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise LsmapError(f"{path}: cannot read the inventory ({exc})") from exc


def _write_layers(path: Path, layers: dict[str, gpd.GeoDataFrame]) -> None:
    with atomic_output(path) as tmp:
        for name, frame in layers.items():
            frame.to_file(tmp, layer=name, driver="GPKG", geometry_type="MultiPolygon", promote_to_multi=True)


def _inventory_crs(footprint: gpd.GeoDataFrame) -> Any:
    """The CRS of a new inventory: where lsmap.stats measures the first scene's areas (its own
    CRS when UTM or equal-area, else the UTM zone of its centre)."""
    from lsmap.stats import area_crs_for

    return area_crs_for(footprint.crs, footprint.total_bounds, "scene footprint")


def _iso(acquired: Any) -> str:
    """Acquisition time as an ISO string that sorts in time order (date, or UTC date-time)."""
    stamp = pd.Timestamp(acquired)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    if stamp == stamp.normalize() and len(str(acquired)) <= 10:
        return stamp.strftime("%Y-%m-%d")
    return stamp.strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class InventoryState:
    """What a pass compares before and after: which observation stands for each landslide, and
    the area observed so far (union of the footprints, m² on the inventory's CRS)."""

    standing: dict[str, tuple[str, str]] = field(default_factory=dict)  # landslide_id -> (scene_id, acquired)
    observed_m2: float = 0.0


def inventory_state(path: str | os.PathLike) -> InventoryState:
    """The :class:`InventoryState` of an inventory file (empty when it does not exist yet). Reads
    the attributes of the current layer (no geometries) and the footprints."""
    path = Path(path)
    if not path.exists():
        return InventoryState()
    try:
        current = pyogrio.read_dataframe(path, layer=LAYER_CURRENT, columns=["landslide_id", "scene_id", "acquired"], read_geometry=False)
        footprints = pyogrio.read_dataframe(path, layer=LAYER_FOOTPRINTS, columns=[])
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, pyogrio.errors.FieldError) as exc:
        raise LsmapError(f"{path}: cannot read the inventory ({exc})") from exc
    standing = dict(zip(current["landslide_id"], zip(current["scene_id"], current["acquired"])))
    return InventoryState(standing, float(shapely.union_all(footprints.geometry.to_numpy()).area) if len(footprints) else 0.0)


@dataclass
class InventoryChanges:
    """Between two states: landslides new, updated (a newer observation now stands) and no longer
    seen (left the current layer), and the area observed for the first time (m²)."""

    new_ids: list[str]
    updated_ids: list[str]
    no_longer_seen_ids: list[str]
    newly_observed_m2: float


def inventory_changes(before: InventoryState, after: InventoryState) -> InventoryChanges:
    old, now = before.standing, after.standing
    return InventoryChanges(
        new_ids=sorted(set(now) - set(old)),
        updated_ids=sorted(k for k in set(now) & set(old) if now[k] != old[k]),
        no_longer_seen_ids=sorted(set(old) - set(now)),
        newly_observed_m2=max(0.0, after.observed_m2 - before.observed_m2),
    )


# -- adding a scene -------------------------------------------------------------------------------


def scene_observations(polygons: gpd.GeoDataFrame, scene_id: str, acquired: str, crs: Any) -> gpd.GeoDataFrame:
    """A scene's polygons as inventory observations: obs_id, scene_id, acquired, attributes."""
    polygons = polygons[~polygons.geometry.is_empty & polygons.geometry.notna()].to_crs(crs)
    ids = polygons["id"].astype(str).tolist() if "id" in polygons else [str(i + 1) for i in range(len(polygons))]
    frame = pd.DataFrame(
        {
            "obs_id": [f"{scene_id}/{i}" for i in ids],
            "scene_id": scene_id,
            "acquired": _iso(acquired),
        }
    )
    for column in OBSERVATION_ATTRIBUTES:
        frame[column] = polygons[column].to_numpy(dtype=float) if column in polygons else np.nan
    return gpd.GeoDataFrame(frame, geometry=shapely.make_valid(polygons.geometry.to_numpy()), crs=crs)


def add_scene(
    inventory: str | os.PathLike,
    *,
    scene_id: str,
    acquired: str,
    polygons: gpd.GeoDataFrame,
    footprint: gpd.GeoDataFrame,
    rules: InventoryRules | None = None,
) -> InventoryUpdate:
    """Add (or replace) one scene's polygons and footprint, recompute and write the inventory.

    ``polygons``: the scene's landslides (any CRS; an ``id`` column and the attributes of
    ``OBSERVATION_ATTRIBUTES`` are carried when present). ``footprint``: the area the scene
    observed, any CRS (the "footprint" layer ``lsmap.mapping.map_scene`` writes, i.e.
    ``lsmap.stats.valid_footprint`` of its mask). Re-adding a scene replaces its earlier observations, so a
    retried delivery never duplicates anything. The file is rewritten atomically.
    """
    inventory = Path(inventory)
    rules = rules or InventoryRules()
    layers = read_inventory(inventory)
    crs = layers[LAYER_OBSERVATIONS].crs if layers else _inventory_crs(footprint)
    before = layers.get(LAYER_CURRENT)

    observations = scene_observations(polygons, scene_id, acquired, crs)
    scene_footprint_row = gpd.GeoDataFrame(
        {
            "scene_id": [scene_id],
            "acquired": [_iso(acquired)],
            "area_m2": [float(footprint.to_crs(crs).geometry.area.sum())],
            "added": [datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")],
        },
        geometry=[shapely.union_all(footprint.to_crs(crs).geometry.to_numpy())],
        crs=crs,
    )
    if layers:
        others = layers[LAYER_OBSERVATIONS][layers[LAYER_OBSERVATIONS]["scene_id"] != scene_id]
        observations = pd.concat([others, observations], ignore_index=True)
        other_footprints = layers[LAYER_FOOTPRINTS][layers[LAYER_FOOTPRINTS]["scene_id"] != scene_id]
        footprints = pd.concat([other_footprints, scene_footprint_row], ignore_index=True)
    else:
        footprints = scene_footprint_row
    observations = gpd.GeoDataFrame(observations, geometry="geometry", crs=crs).sort_values("obs_id", ignore_index=True)
    footprints = gpd.GeoDataFrame(footprints, geometry="geometry", crs=crs).sort_values("scene_id", ignore_index=True)

    current, history = build_inventory(observations, footprints, rules)
    _write_layers(
        inventory,
        {LAYER_CURRENT: current, LAYER_HISTORY: history, LAYER_OBSERVATIONS: observations, LAYER_FOOTPRINTS: footprints},
    )
    before_ids = set(before["landslide_id"]) if before is not None else set()
    after_ids = set(current["landslide_id"])
    return InventoryUpdate(
        scene_id=scene_id,
        landslides_before=len(before_ids),
        landslides_after=len(after_ids),
        area_before_m2=float(before["area_m2"].sum()) if before is not None else 0.0,
        area_after_m2=float(current["area_m2"].sum()),
        new_landslide_ids=sorted(after_ids - before_ids),
        removed_landslide_ids=sorted(before_ids - after_ids),
    )


# -- the rule -------------------------------------------------------------------------------------


def match_observations(observations: gpd.GeoDataFrame, min_overlap: float) -> np.ndarray:
    """Landslide label (0..K-1) of each observation: connected components of the overlap graph.

    An edge joins two polygons of different scenes whose intersection is at least ``min_overlap``
    of the smaller polygon's area. Polygons of one scene are never joined directly: the mapping
    already separated them.
    """
    n = len(observations)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    geoms = observations.geometry.to_numpy()
    left, right = observations.sindex.query(geoms, predicate="intersects")
    scenes = observations["scene_id"].to_numpy()
    keep = (left < right) & (scenes[left] != scenes[right])
    left, right = left[keep], right[keep]
    overlap = shapely.area(shapely.intersection(geoms[left], geoms[right]))
    smaller = np.minimum(shapely.area(geoms[left]), shapely.area(geoms[right]))
    same = overlap >= min_overlap * smaller
    graph = coo_matrix((np.ones(int(same.sum())), (left[same], right[same])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def _group_extents(obs: gpd.GeoDataFrame) -> np.ndarray:
    """Extent of each landslide label 0..K-1: the union of its observations (most have one)."""
    labels = obs["_label"].to_numpy()
    geoms = obs.geometry.to_numpy()
    extents = np.empty(labels.max() + 1, dtype=object)
    counts = np.bincount(labels)
    single = counts[labels] == 1
    extents[labels[single]] = geoms[single]
    for label in np.flatnonzero(counts > 1):
        extents[label] = shapely.union_all(geoms[labels == label])
    return extents


def _newest_viewing_day(extents: np.ndarray, footprints: gpd.GeoDataFrame, min_coverage: float) -> pd.Series:
    """Per label, the newest acquisition day whose footprints cover >= ``min_coverage`` of its
    extent ('' when none does). Footprints of one day are merged first, so adjacent scenes of one
    pass together view a landslide that straddles their common edge."""
    days = footprints.assign(day=footprints["acquired"].str.slice(0, 10)).dissolve(by="day").reset_index()
    ext_idx, day_idx = days.sindex.query(extents, predicate="intersects")
    covered = shapely.area(shapely.intersection(extents[ext_idx], days.geometry.to_numpy()[day_idx]))
    fraction = covered / np.maximum(shapely.area(extents[ext_idx]), 1e-9)
    keep = fraction >= min_coverage
    viewing = pd.Series(days["day"].to_numpy()[day_idx[keep]], index=ext_idx[keep])
    return viewing.groupby(level=0).max().reindex(range(len(extents)), fill_value="")


def _joined(values: pd.Series, by: pd.Series) -> pd.Series:
    """Sorted unique values per group joined with '+' ('A+B')."""
    pairs = pd.DataFrame({"by": by.to_numpy(), "value": values.to_numpy()}).drop_duplicates().sort_values(["by", "value"])
    return pairs.groupby("by")["value"].agg("+".join)


def build_inventory(
    observations: gpd.GeoDataFrame, footprints: gpd.GeoDataFrame, rules: InventoryRules
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Apply the rule of the module docstring: (current landslides, history of observations)."""
    crs = observations.crs
    obs = observations.sort_values(["acquired", "obs_id"], ignore_index=True)
    history_columns = [c for c in observations.columns if c != "geometry"] + ["landslide_id", "status", "superseded_by"]
    if obs.empty:
        history = obs.assign(landslide_id="", status="", superseded_by="")[history_columns + ["geometry"]]
        return _current_frame(obs.iloc[:0], [], crs), gpd.GeoDataFrame(history, geometry="geometry", crs=crs)
    obs["_label"] = match_observations(obs, rules.match_min_overlap)
    obs["_day"] = obs["acquired"].str.slice(0, 10)
    groups = obs.groupby("_label")

    # The newest day that viewed a landslide decides; if none did (only partial views), the newest day that mapped it.
    decisive = _newest_viewing_day(_group_extents(obs), footprints, rules.view_min_coverage)
    decisive = decisive.where(decisive != "", groups["_day"].max())
    obs["_decisive"] = obs["_label"].map(decisive)
    obs["landslide_id"] = obs["_label"].map(groups["obs_id"].first())  # obs is sorted oldest first
    standing = obs["_day"] == obs["_decisive"]
    stands = standing.groupby(obs["_label"]).any()
    obs["_stands"] = obs["_label"].map(stands)

    current = _current_frame(obs[standing], obs, crs)

    rest = obs[~standing].copy()
    day_scenes = _joined(footprints["scene_id"], footprints["acquired"].str.slice(0, 10))
    standing_scenes = _joined(obs.loc[standing, "scene_id"], obs.loc[standing, "_label"])
    rest["status"] = np.where(~rest["_stands"], "not_redetected", np.where(rest["_day"] < rest["_decisive"], "superseded", "partial_view"))
    rest["superseded_by"] = np.where(rest["_stands"], rest["_label"].map(standing_scenes), rest["_decisive"].map(day_scenes))
    history = gpd.GeoDataFrame(rest[history_columns + ["geometry"]], geometry="geometry", crs=crs)
    return current, history.sort_values("obs_id", ignore_index=True)


CURRENT_COLUMNS = ["landslide_id", "scene_id", "acquired", "first_scene_id", "first_acquired", "n_observations",
                   "area_m2", "perimeter_m", "prob_mean", "prob_max", "centroid_lon", "centroid_lat"]


def _current_frame(standing: gpd.GeoDataFrame, members: gpd.GeoDataFrame, crs: Any) -> gpd.GeoDataFrame:
    """One row per standing landslide: the standing observations of a label merged (usually one)."""
    if standing.empty:
        float_columns = {"area_m2", "perimeter_m", "prob_mean", "prob_max", "centroid_lon", "centroid_lat"}
        empty = {c: pd.Series([], dtype=float if c in float_columns else object) for c in CURRENT_COLUMNS}
        empty["n_observations"] = pd.Series([], dtype="int64")
        return gpd.GeoDataFrame(empty, geometry=gpd.GeoSeries([], crs=crs))
    by_label = members.groupby("_label")
    standing = standing.assign(_weight=standing["area_m2"].fillna(pd.Series(shapely.area(standing.geometry.to_numpy()), index=standing.index)))
    standing = standing.assign(_weighted_prob=standing["prob_mean"] * standing["_weight"])
    grouped = standing.groupby("_label")
    frame = pd.DataFrame({
        "landslide_id": grouped["landslide_id"].first(),
        "scene_id": _joined(standing["scene_id"], standing["_label"]),
        "acquired": grouped["acquired"].max(),
        "first_scene_id": by_label["scene_id"].first(),
        "first_acquired": by_label["acquired"].first(),
        "n_observations": by_label["scene_id"].nunique(),
        "prob_mean": grouped["_weighted_prob"].sum(min_count=1) / grouped["_weight"].sum(),
        "prob_max": grouped["prob_max"].max(),
    }).loc[grouped.size().index]
    geoms = _group_extents(standing.assign(_label=standing["_label"].map({label: i for i, label in enumerate(frame.index)})))
    frame = gpd.GeoDataFrame(frame.reset_index(drop=True), geometry=list(geoms), crs=crs)
    frame["area_m2"] = shapely.area(geoms)
    frame["perimeter_m"] = shapely.length(geoms)
    # Centroid in the projected CRS, then to lon/lat (a centroid computed in degrees is skewed).
    centroids = gpd.GeoSeries(frame.geometry.centroid, crs=crs).to_crs(4326)
    frame["centroid_lon"] = centroids.x.to_numpy()
    frame["centroid_lat"] = centroids.y.to_numpy()
    frame["n_observations"] = frame["n_observations"].astype("int64")
    return frame[CURRENT_COLUMNS + ["geometry"]].sort_values("landslide_id", ignore_index=True)
