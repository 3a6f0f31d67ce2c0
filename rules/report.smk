# Reports people look at. Paths:
#   results/<region>/<scene>/quicklook.{png,tif}
#   results/<region>/{report.html,landslides.geojson,landslides.kml}
#   results/benchmark/report.html
# Outputs are marked with report() so that `snakemake --report report.zip` gives a browsable
# record of a run (captions in report/).
report: "../report/workflow.rst"


rule quicklook:
    input:
        image=scene_image,
        landslides=f"{RESULTS}/{{region}}/{{scene}}/landslides.gpkg",
    output:
        png=report(
            f"{RESULTS}/{{region}}/{{scene}}/quicklook.png",
            caption="../report/quicklook.rst",
            category="Quicklooks",
            labels={"region": "{region}", "scene": "{scene}"},
        ),
        cog=f"{RESULTS}/{{region}}/{{scene}}/quicklook.tif",
    params:
        acquired=lambda w: scene_spec(w.region, w.scene).get("acquired"),
    log:
        log_path("quicklook", "{region}", "{scene}"),
    benchmark:
        benchmark_path("quicklook", "{region}", "{scene}")
    threads: 1
    resources:
        mem_mb=2500,
        runtime=30,
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/quicklook.py"


rule export_region:
    input:
        f"{RESULTS}/{{region}}/landslides.gpkg",
    output:
        geojson=report(
            f"{RESULTS}/{{region}}/landslides.geojson",
            caption="../report/exports.rst",
            category="Exports",
            labels={"region": "{region}", "format": "GeoJSON"},
        ),
        kml=report(
            f"{RESULTS}/{{region}}/landslides.kml",
            caption="../report/exports.rst",
            category="Exports",
            labels={"region": "{region}", "format": "KML"},
        ),
    log:
        log_path("export_region", "{region}"),
    benchmark:
        benchmark_path("export_region", "{region}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/export_region.py"


rule region_report:
    input:
        stats=f"{RESULTS}/{{region}}/stats.json",
        frequency_area=f"{RESULTS}/{{region}}/frequency_area.png",
        geojson=f"{RESULTS}/{{region}}/landslides.geojson",
        quicklooks=lambda w: [f"{scene_dir(w.region, s)}/quicklook.png" for s in region_scenes(w.region)],
        masks=lambda w: [f"{scene_dir(w.region, s)}/mask.tif" for s in region_scenes(w.region)],
    output:
        report(
            f"{RESULTS}/{{region}}/report.html",
            caption="../report/region_report.rst",
            category="Region reports",
            labels={"region": "{region}"},
        ),
    params:
        scenes=lambda w: region_scenes(w.region),
        description=lambda w: REGIONS[w.region].get("description"),
    log:
        log_path("region_report", "{region}"),
    benchmark:
        benchmark_path("region_report", "{region}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/region_report.py"


for _region in REGIONS:

    rule:
        name:
            f"report_{_region}"
        input:
            region_report_outputs(_region),


rule report_all:
    input:
        [region_report_outputs(region) for region in REGIONS],


rule benchmark_report:
    input:
        table5=f"{RESULTS}/benchmark/table5.csv",
        samples=f"{RESULTS}/benchmark/samples.png",
        histories=expand(f"{RESULTS}/train/{{model}}/history.csv", model=MODELS),
    output:
        report(
            f"{RESULTS}/benchmark/report.html",
            caption="../report/benchmark_report.rst",
            category="Benchmark",
            labels={"page": "Table 5 report"},
        ),
    params:
        models=MODELS,
    log:
        log_path("benchmark_report", "report"),
    benchmark:
        benchmark_path("benchmark_report", "report")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/benchmark_report.py"
