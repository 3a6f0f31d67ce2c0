# Mapping: analysis-ready scene + checkpoint -> per-scene probability/mask COGs and polygons ->
# per-region merged polygons and statistics (lsmap/mapping.py). Paths:
#   results/<region>/<scene>/{probability.tif,mask.tif,landslides.gpkg,landslides.parquet,scene_stats.json}
#   results/<region>/{landslides.gpkg,stats.json,stats.csv,frequency_area.png}
# Synthetic regions (the demo) also make their own landscapes, training dataset and model; the
# demo scene itself is imaged as a GF-6-like L1A delivery and preprocessed (rules/preprocess.smk):
#   results/<region>/{landscape,training_landscape}/{reflectance,dem,truth_mask}.tif + truth.gpkg
#   results/<region>/dataset/dataset.json, results/<region>/model/best.pt, results/<region>/<scene>/truth_iou.json
MAPPING = config["mapping"]
SYNTHETIC_REGIONS = [r for r in REGIONS if is_synthetic(r)] or ["__none__"]
DEMO = config.get("synthetic", {})  # the demo's recipe (config.yaml, section synthetic)


rule synthetic_landscape:
    output:
        **{name: f"{RESULTS}/{{region}}/{{landscape}}/{name}.tif" for name in ("reflectance", "dem", "truth_mask")},
        truth=f"{RESULTS}/{{region}}/{{landscape}}/truth.gpkg",
    wildcard_constraints:
        region="|".join(SYNTHETIC_REGIONS),
        landscape="landscape|training_landscape",
    params:
        seed=lambda w: DEMO["seeds"][w.landscape],
        size_px=lambda w: DEMO["size_px"],
        scars_per_km2=lambda w: DEMO["scars_per_km2"],
    log:
        log_path("synthetic_landscape", "{region}", "{landscape}"),
    benchmark:
        benchmark_path("synthetic_landscape", "{region}", "{landscape}")
    threads: 1
    resources:
        mem_mb=1500,  # demo: 648 MB, 7 s
        runtime=10,
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/synthetic_landscape.py"


rule synthetic_dataset:
    input:
        scene=f"{RESULTS}/{{region}}/training_landscape/reflectance.tif",
        polygons=f"{RESULTS}/{{region}}/training_landscape/truth.gpkg",
    output:
        f"{RESULTS}/{{region}}/dataset/dataset.json",
    params:
        chip_px=lambda w: DEMO["chip_px"],
    log:
        log_path("synthetic_dataset", "{region}"),
    benchmark:
        benchmark_path("synthetic_dataset", "{region}")
    threads: 1
    resources:
        mem_mb=2000,  # demo: 977 MB, 4 s
        runtime=10,
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/synthetic_dataset.py"


rule synthetic_model:
    input:
        f"{RESULTS}/{{region}}/dataset/dataset.json",
    output:
        f"{RESULTS}/{{region}}/model/best.pt",
    params:
        train=lambda w: DEMO["train"],
    log:
        log_path("synthetic_model", "{region}"),
    benchmark:
        benchmark_path("synthetic_model", "{region}")
    threads: 2
    resources:
        mem_mb=4000,  # demo: 1961 MB; 1 min idle, 6 min on 2 cores at load 10
        runtime=30,
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/synthetic_model.py"


rule map_scene:
    input:
        image=scene_image,
        checkpoint=lambda w: region_checkpoint(w.region),
        dem=scene_dem,
    output:
        **{name.replace(".", "_"): f"{scene_dir('{region}', '{scene}')}/{name}"
           for name in ("probability.tif", "mask.tif", "landslides.gpkg", "landslides.parquet", "scene_stats.json")},
    params:
        options=MAPPING,
        acquired=lambda w: str(scene_spec(w.region, w.scene).get("acquired", "")),
    log:
        log_path("map_scene", "{region}", "{scene}"),
    benchmark:
        benchmark_path("map_scene", "{region}", "{scene}")
    threads: 2
    resources:
        # Memory does not grow with the scene (README "Mapping"): 2.35 GB at 10,000² and 20,000²
        # (ResNet50, batch 4, bf16), batch 8 fp32 adds ~1.3 GB of activations; demo 1.8 GB.
        # Time does: ~280 Mpx (1,900 tiles) per GB of reflectance COG, 1 h per GB on CPU.
        # GPUs are opt-in: profiles/slurm-gpu.
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=job_runtime(30, min_per_input_gb=60),
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/map_scene.py"


rule summarize_region:
    input:
        masks=lambda w: [f"{d}/mask.tif" for d in mapped_scene_dirs(w).values()],
        polygons=lambda w: [f"{d}/landslides.gpkg" for d in mapped_scene_dirs(w).values()],
        stats=lambda w: [f"{d}/scene_stats.json" for d in mapped_scene_dirs(w).values()],
    output:
        landslides_gpkg=f"{RESULTS}/{{region}}/landslides.gpkg",
        stats_json=f"{RESULTS}/{{region}}/stats.json",
        stats_csv=report(
            f"{RESULTS}/{{region}}/stats.csv",
            caption="../report/stats.rst",
            category="Region statistics",
            labels={"region": "{region}", "file": "stats.csv"},
        ),
        frequency_area_png=report(
            f"{RESULTS}/{{region}}/frequency_area.png",
            caption="../report/frequency_area.rst",
            category="Region statistics",
            labels={"region": "{region}", "file": "frequency-area plot"},
        ),
    params:
        scene_dirs=mapped_scene_dirs,
    log:
        log_path("summarize_region", "{region}"),
    benchmark:
        benchmark_path("summarize_region", "{region}")
    threads: 1
    resources:
        # demo: 976 MB, 27 s at load 10; grows with the region's polygons
        mem_mb=job_mem_mb(2000, mb_per_input_gb=2000),
        runtime=job_runtime(15, min_per_input_gb=30),
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/summarize_region.py"


rule synthetic_truth_iou:
    input:
        mask=f"{scene_dir('{region}', '{scene}')}/mask.tif",
        truth=f"{RESULTS}/{{region}}/landscape/truth_mask.tif",
    output:
        f"{scene_dir('{region}', '{scene}')}/truth_iou.json",
    wildcard_constraints:
        region="|".join(SYNTHETIC_REGIONS),
    log:
        log_path("synthetic_truth_iou", "{region}", "{scene}"),
    benchmark:
        benchmark_path("synthetic_truth_iou", "{region}", "{scene}")
    threads: 1
    resources:
        mem_mb=500,  # demo: 126 MB, 4 s
        runtime=10,
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/synthetic_truth_iou.py"


for _region in REGIONS:

    rule:
        name:
            f"map_{_region}"
        input:
            region_outputs(_region)
            + ([f"{scene_dir(_region, s)}/truth_iou.json" for s in region_scenes(_region)] if is_synthetic(_region) else []),
