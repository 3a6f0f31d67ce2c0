# Path helpers and input functions shared by all the .smk files. One path pattern for every output
#   results/<region>/<scene>/{probability,mask}.tif, results/<region>/<scene>/landslides.gpkg
#   results/<region>/{landslides.gpkg,stats.json,stats.csv,frequency_area.png}
import os
import shutil
from pathlib import Path

from snakemake.exceptions import WorkflowError

RESULTS = config.get("results_dir", "results")
REGIONS = config["regions"]
MODELS = config["training"]["models"]
DATA_HELP = "see README.md, section 'Data'"


wildcard_constraints:
    region="|".join(REGIONS),
    scene="[A-Za-z0-9_.-]+",
    model="|".join(MODELS),


# Job sizes for cluster runs (profiles/slurm): each rule states the peak RSS (mem_mb, MB) and
# wall time (runtime, minutes) measured on the demo and the benchmarks, with headroom (README "On
# a SLURM cluster"), plus a share of its input size where the work grows with it. A retry doubles
# both, so a job killed for memory or time comes back bigger. Local runs ignore them.
def job_mem_mb(base_mb, mb_per_input_gb=0):
    return lambda wildcards, input, attempt: int((base_mb + mb_per_input_gb * input.size_mb / 1024) * attempt)


def job_runtime(base_min, min_per_input_gb=0):
    return lambda wildcards, input, attempt: int((base_min + min_per_input_gb * input.size_mb / 1024) * attempt)


onstart:
    # Without this the SLURM executor fails each job with "No such file or directory: 'sacct'".
    if workflow.executor_plugin.name == "slurm" and shutil.which("sbatch") is None:
        raise WorkflowError(
            "the SLURM profile needs SLURM's commands (sbatch, squeue) on the PATH: sbatch not found "
            "(run on the cluster's login node, or locally with --profile profiles/local)"
        )


def log_path(rule_name, *parts):
    return os.path.join("logs", rule_name, *parts) + ".log"


def benchmark_path(rule_name, *parts):
    return os.path.join("logs", rule_name, *parts) + ".benchmark.tsv"


def require_file(path, region):
    """A configured input that is not on disk stops the run with one line naming it."""
    if not Path(path).exists():
        raise WorkflowError(f"region '{region}': input {path} is missing ({DATA_HELP})")
    return path


def region_scenes(region):
    return list(REGIONS[region]["scenes"])


def scene_spec(region, scene):
    return REGIONS[region]["scenes"][scene]


def is_synthetic(region):
    return REGIONS[region].get("synthetic", False)


def scene_dir(region, scene):
    return f"{RESULTS}/{region}/{scene}"


def region_outputs(region):
    """What map_<region> delivers: per-scene rasters and polygons, and the region summary."""
    per_scene = [
        f"{scene_dir(region, scene)}/{name}"
        for scene in region_scenes(region)
        for name in ("probability.tif", "mask.tif", "landslides.gpkg")
    ]
    summary = [
        f"{RESULTS}/{region}/{name}"
        for name in ("landslides.gpkg", "stats.json", "stats.csv", "frequency_area.png")
    ]
    return per_scene + summary


def ard_dir(region, scene):
    """Analysis-ready products of a scene made by the preprocessing rules."""
    return f"{scene_dir(region, scene)}/ard"


def scene_image(wildcards):
    """The analysis-ready scene that mapping reads: a configured `image`, or what preprocessing made."""
    spec = scene_spec(wildcards.region, wildcards.scene)
    if "image" in spec:
        return require_file(spec["image"], wildcards.region)
    return f"{ard_dir(wildcards.region, wildcards.scene)}/reflectance.tif"


def scene_delivery(wildcards):
    """The L1A delivery (.tar.gz or folder) of a scene; synthetic regions generate theirs."""
    if is_synthetic(wildcards.region):
        return f"{RESULTS}/{wildcards.region}/inbox/{wildcards.scene}"
    spec = scene_spec(wildcards.region, wildcards.scene)
    if "delivery" not in spec:
        raise WorkflowError(f"region '{wildcards.region}': scene '{wildcards.scene}' has neither `delivery` nor `image` ({DATA_HELP})")
    return require_file(spec["delivery"], wildcards.region)


def region_dem(wildcards):
    """The region's DEM (any CRS); synthetic regions generate theirs."""
    if is_synthetic(wildcards.region):
        return f"{RESULTS}/{wildcards.region}/inbox/dem.tif"
    return require_file(REGIONS[wildcards.region]["dem"], wildcards.region)


def region_checkpoint(region):
    """The model that maps a region: its own `checkpoint`, the demo model, or mapping.checkpoint."""
    if "checkpoint" in REGIONS[region]:
        return REGIONS[region]["checkpoint"]
    if is_synthetic(region):
        return f"{RESULTS}/{region}/model/best.pt"
    return config["mapping"]["checkpoint"]


def scene_gcps(wildcards):
    """A scene's optional GCP GeoJSON (RPC bias correction in preprocessing); [] when none."""
    spec = scene_spec(wildcards.region, wildcards.scene)
    return require_file(spec["gcps"], wildcards.region) if "gcps" in spec else []


def training_dataset(wildcards=None):
    """The training dataset's dataset.json (imported from training.source), else the user's own
    dataset folder in the paper layout (lsmap train checks its contents and names what is wrong)."""
    dataset = config["training"]["dataset"]
    if "source" in config["training"]:
        return f"{dataset}/dataset.json"
    return dataset


# Mapping (rules/mapping.smk)
def scene_dem(wildcards):
    """The region's DEM when it has one (DEM attributes on the polygons), else nothing."""
    region = wildcards.region
    return region_dem(wildcards) if is_synthetic(region) or "dem" in REGIONS[region] else []


def mapped_scene_dirs(wildcards):
    return {scene: scene_dir(wildcards.region, scene) for scene in region_scenes(wildcards.region)}


def region_report_outputs(region):
    """What report_<region> delivers: the page, the exports and every scene's quicklook."""
    pages = [f"{RESULTS}/{region}/{name}" for name in ("report.html", "landslides.geojson", "landslides.kml")]
    quicklooks = [f"{scene_dir(region, s)}/quicklook.{ext}" for s in region_scenes(region) for ext in ("png", "tif")]
    return pages + quicklooks
