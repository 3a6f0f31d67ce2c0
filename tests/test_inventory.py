"""The cumulative inventory: one row per landslide however many scenes saw it, newest clear view wins."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import box

from lsmap.inventory import (
    LAYER_CURRENT,
    LAYER_FOOTPRINTS,
    LAYER_HISTORY,
    LAYER_OBSERVATIONS,
    InventoryRules,
    add_scene,
    inventory_changes,
    inventory_state,
    read_inventory,
)

UTM = "EPSG:32648"  # Sichuan; metres
X0, Y0 = 400_000.0, 3_300_000.0


def polygons(*boxes: tuple[float, float, float, float], prob: float = 0.8) -> gpd.GeoDataFrame:
    """Scene polygons in metres relative to (X0, Y0), with the attributes map_scene writes."""
    geoms = [box(X0 + a, Y0 + b, X0 + c, Y0 + d) for a, b, c, d in boxes]
    return gpd.GeoDataFrame(
        {
            "id": np.arange(1, len(geoms) + 1),
            "area_m2": [g.area for g in geoms],
            "prob_mean": prob,
            "prob_max": min(1.0, prob + 0.1),
        },
        geometry=geoms,
        crs=UTM,
    )


def footprint(xmin: float, ymin: float, xmax: float, ymax: float) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(geometry=[box(X0 + xmin, Y0 + ymin, X0 + xmax, Y0 + ymax)], crs=UTM)


# Scene A (older) covers x 0..2000, scene B (newer) covers x 1000..3000; both y 0..2000.
A = dict(scene_id="A", acquired="2022-09-07", footprint=footprint(0, 0, 2000, 2000))
B = dict(scene_id="B", acquired="2022-09-10", footprint=footprint(1000, 0, 3000, 2000))


def test_a_landslide_seen_in_two_overlapping_acquisitions_is_counted_once(tmp_path):
    inventory = tmp_path / "inventory.gpkg"
    # The same 100 x 200 m scar in both scenes, shifted by 6 m (co-registration error) and grown in B.
    add_scene(inventory, polygons=polygons((1200, 500, 1300, 700)), **A)
    update = add_scene(inventory, polygons=polygons((1206, 500, 1306, 760)), **B)

    layers = read_inventory(inventory)
    current = layers[LAYER_CURRENT]
    assert len(current) == 1
    row = current.iloc[0]
    assert row["landslide_id"] == "A/1"  # identity of its first observation is kept
    assert (row["scene_id"], row["acquired"]) == ("B", "2022-09-10")  # the newest view stands
    assert (row["first_scene_id"], row["first_acquired"]) == ("A", "2022-09-07")
    assert row["n_observations"] == 2
    assert row["area_m2"] == pytest.approx(100 * 260, rel=1e-6)
    history = layers[LAYER_HISTORY]
    assert history[["obs_id", "status", "superseded_by", "landslide_id"]].values.tolist() == [["A/1", "superseded", "B", "A/1"]]
    assert len(layers[LAYER_OBSERVATIONS]) == 2 and len(layers[LAYER_FOOTPRINTS]) == 2
    assert update.new_landslide_ids == [] and update.area_added_m2 == pytest.approx(100 * 60, rel=1e-6)


def test_older_polygons_outside_the_newer_footprint_stay_current(tmp_path):
    inventory = tmp_path / "inventory.gpkg"
    add_scene(inventory, polygons=polygons((100, 100, 200, 200)), **A)  # x < 1000: only A saw it
    add_scene(inventory, polygons=polygons((2500, 100, 2600, 200)), **B)  # x > 2000: only B saw it
    current = read_inventory(inventory)[LAYER_CURRENT]
    assert sorted(current["landslide_id"]) == ["A/1", "B/1"]
    assert dict(zip(current["landslide_id"], current["scene_id"])) == {"A/1": "A", "B/1": "B"}
    assert current["area_m2"].sum() == pytest.approx(2 * 100 * 100, rel=1e-6)


def test_a_landslide_absent_from_the_newer_clear_view_moves_to_history(tmp_path):
    inventory = tmp_path / "inventory.gpkg"
    add_scene(inventory, polygons=polygons((1500, 500, 1600, 600)), **A)
    update = add_scene(inventory, polygons=polygons(), **B)  # B observed the place and saw nothing
    layers = read_inventory(inventory)
    assert len(layers[LAYER_CURRENT]) == 0
    history = layers[LAYER_HISTORY]
    assert history[["obs_id", "status", "superseded_by"]].values.tolist() == [["A/1", "not_redetected", "B"]]
    assert update.removed_landslide_ids == ["A/1"] and update.area_added_m2 == pytest.approx(-100 * 100)


def test_a_sliver_at_the_newer_scene_edge_does_not_replace_the_full_view(tmp_path):
    inventory = tmp_path / "inventory.gpkg"
    # A saw the whole scar across x 800..1100; B's footprint starts at x 1000, so B saw only 1/3.
    add_scene(inventory, polygons=polygons((800, 500, 1100, 600)), **A)
    add_scene(inventory, polygons=polygons((1000, 500, 1100, 600)), **B)
    layers = read_inventory(inventory)
    current = layers[LAYER_CURRENT]
    assert len(current) == 1
    assert current.iloc[0]["scene_id"] == "A" and current.iloc[0]["area_m2"] == pytest.approx(300 * 100)
    assert current.iloc[0]["n_observations"] == 2
    assert layers[LAYER_HISTORY][["obs_id", "status"]].values.tolist() == [["B/1", "partial_view"]]


def test_adjacent_scenes_of_one_day_are_stitched_into_one_landslide(tmp_path):
    inventory = tmp_path / "inventory.gpkg"
    day = "2022-09-10"
    # West scene x 0..1000, east scene x 900..2000 (100 m side overlap); the scar spans x 850..1150.
    add_scene(inventory, scene_id="W", acquired=day, polygons=polygons((850, 0, 1000, 100)), footprint=footprint(0, -500, 1000, 500))
    add_scene(inventory, scene_id="E", acquired=day, polygons=polygons((900, 0, 1150, 100)), footprint=footprint(900, -500, 2000, 500))
    current = read_inventory(inventory)[LAYER_CURRENT]
    assert len(current) == 1
    assert current.iloc[0]["scene_id"] == "E+W"
    assert current.iloc[0]["area_m2"] == pytest.approx(300 * 100, rel=1e-6)


def test_the_result_does_not_depend_on_arrival_order_and_re_adding_changes_nothing(tmp_path):
    scenes = [
        dict(polygons=polygons((1200, 500, 1300, 700), (100, 100, 200, 200), (1500, 1500, 1600, 1600)), **A),
        dict(polygons=polygons((1206, 500, 1306, 760), (2500, 100, 2600, 200)), **B),
    ]
    forward, backward = tmp_path / "forward.gpkg", tmp_path / "backward.gpkg"
    for scene in scenes:
        add_scene(forward, **scene)
    for scene in reversed(scenes):
        add_scene(backward, **scene)
    add_scene(backward, **scenes[0])  # a retried delivery: replaces, never duplicates

    def table(path):
        current = read_inventory(path)[LAYER_CURRENT].drop(columns="geometry")
        return current.sort_values("landslide_id").round(6).to_dict("records")

    assert table(forward) == table(backward)
    assert len(read_inventory(backward)[LAYER_OBSERVATIONS]) == 5
    assert sorted(r["landslide_id"] for r in table(forward)) == ["A/1", "A/2", "B/2"]  # A/3: not redetected by B


def test_a_scene_in_degrees_gets_a_metric_inventory(tmp_path):
    inventory = tmp_path / "inventory.gpkg"
    scene = polygons((0, 0, 100, 100)).to_crs(4326)
    add_scene(inventory, scene_id="G", acquired="2022-09-10T03:21:05Z", polygons=scene, footprint=footprint(-500, -500, 500, 500).to_crs(4326))
    layers = read_inventory(inventory)
    assert layers[LAYER_CURRENT].crs.is_projected
    row = layers[LAYER_CURRENT].iloc[0]
    assert row["area_m2"] == pytest.approx(100 * 100, rel=1e-6)  # measured back on UTM 48N, lsmap.stats' choice
    assert row["acquired"] == "2022-09-10T03:21:05"
    lon, lat = shapely.get_coordinates(gpd.GeoSeries([box(X0, Y0, X0 + 100, Y0 + 100).centroid], crs=UTM).to_crs(4326).iloc[0])[0]
    assert (row["centroid_lon"], row["centroid_lat"]) == pytest.approx((lon, lat), abs=1e-6)


def test_rules_reject_fractions_outside_0_1():
    with pytest.raises(Exception, match="match_min_overlap"):
        InventoryRules(match_min_overlap=0)


def test_changes_between_states_name_new_updated_and_no_longer_seen_landslides(tmp_path):
    inventory = tmp_path / "inventory.gpkg"
    assert inventory_state(inventory).standing == {} and inventory_state(inventory).observed_m2 == 0.0
    add_scene(inventory, polygons=polygons((100, 100, 200, 200), (1200, 500, 1300, 700)), **A)
    before = inventory_state(inventory)
    assert before.observed_m2 == pytest.approx(2000 * 2000)
    # B re-maps A/2 (now standing from B), finds a new one; C (newest) views A/1 clearly and maps nothing there.
    add_scene(inventory, polygons=polygons((1206, 500, 1306, 760), (2500, 100, 2600, 200)), **B)
    add_scene(inventory, polygons=polygons(), scene_id="C", acquired="2022-09-12", footprint=footprint(0, 0, 500, 500))
    changes = inventory_changes(before, inventory_state(inventory))
    assert changes.new_ids == ["B/2"]
    assert changes.updated_ids == ["A/2"]
    assert changes.no_longer_seen_ids == ["A/1"]
    assert changes.newly_observed_m2 == pytest.approx(1000 * 2000)  # x 2000..3000, B's part beyond A
    assert inventory_changes(before, before).new_ids == []
