# GF-6 PMS L1A delivery -> analysis-ready scene in results/<region>/<scene>/ard/ (lsmap/preprocess.py):
#   orthorectify (RPC + DEM, optional GCP bias correction) -> reflectance (calibration + pan-sharpening, COG)
#   -> terrain (DEM, slope, aspect, hillshade on the scene grid). Synthetic regions make their delivery first.
PREPROCESS = config.get("preprocess", {})


rule preprocess_orthorectify:
    input:
        delivery=scene_delivery,
        dem=region_dem,
        gcps=scene_gcps,
    output:
        pan=temp(f"{ard_dir('{region}', '{scene}')}/pan_dn.tif"),
        mux=temp(f"{ard_dir('{region}', '{scene}')}/mux_dn.tif"),
        source_dem=temp(f"{ard_dir('{region}', '{scene}')}/dem_source.tif"),
        geometry=f"{ard_dir('{region}', '{scene}')}/geometry.json",
    params:
        settings=PREPROCESS,
    log:
        log_path("preprocess_orthorectify", "{region}", "{scene}"),
    benchmark:
        benchmark_path("preprocess_orthorectify", "{region}", "{scene}")
    threads: 2
    resources:
        # 529 MB at 8,000², 661 MB at 20,000² (~840 MB of delivery more); 3.2 Mpx/s on 2 threads
        mem_mb=job_mem_mb(1400, mb_per_input_gb=300),
        runtime=job_runtime(15, min_per_input_gb=8),
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/preprocess_orthorectify.py"


rule preprocess_reflectance:
    input:
        pan=rules.preprocess_orthorectify.output.pan,
        mux=rules.preprocess_orthorectify.output.mux,
    output:
        reflectance=f"{ard_dir('{region}', '{scene}')}/reflectance.tif",
    params:
        settings=PREPROCESS,
    log:
        log_path("preprocess_reflectance", "{region}", "{scene}"),
    benchmark:
        benchmark_path("preprocess_reflectance", "{region}", "{scene}")
    threads: 2
    resources:
        # 909 MB at 8,000², 1304 MB at 20,000² (+395 MB for ~840 MB more DN); 2.4 Mpx/s on 2 threads
        mem_mb=job_mem_mb(1800, mb_per_input_gb=1000),
        runtime=job_runtime(15, min_per_input_gb=12),
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/preprocess_reflectance.py"


rule preprocess_terrain:
    input:
        dem=region_dem,
        scene=rules.preprocess_reflectance.output.reflectance,
    output:
        **{name: f"{ard_dir('{region}', '{scene}')}/{name}.tif" for name in ("dem", "slope", "aspect", "hillshade")},
    params:
        settings=PREPROCESS,
    log:
        log_path("preprocess_terrain", "{region}", "{scene}"),
    benchmark:
        benchmark_path("preprocess_terrain", "{region}", "{scene}")
    threads: 2
    resources:
        # 874 MB at 8,000², 984 MB at 20,000²; 2.3 Mpx/s on 2 threads (reflectance COG ~3.6 MB/Mpx)
        mem_mb=job_mem_mb(2000, mb_per_input_gb=100),
        runtime=job_runtime(15, min_per_input_gb=8),
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/preprocess_terrain.py"


# Synthetic regions (demo): the landscape (lsmap/synthetic.py) imaged as a GF-6-like L1A delivery.
rule preprocess_synthetic_delivery:
    input:
        reflectance=f"{RESULTS}/{{region}}/landscape/reflectance.tif",
        dem=f"{RESULTS}/{{region}}/landscape/dem.tif",
    output:
        delivery=directory(f"{RESULTS}/{{region}}/inbox/{{scene}}"),
    params:
        settings=PREPROCESS,
    log:
        log_path("preprocess_synthetic_delivery", "{region}", "{scene}"),
    benchmark:
        benchmark_path("preprocess_synthetic_delivery", "{region}", "{scene}")
    threads: 1
    resources:
        mem_mb=1000,  # demo: 447 MB, 2 s
        runtime=10,
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/preprocess_synthetic_delivery.py"


rule preprocess_synthetic_dem:
    input:
        dem=f"{RESULTS}/{{region}}/landscape/dem.tif",
    output:
        dem=f"{RESULTS}/{{region}}/inbox/dem.tif",
    log:
        log_path("preprocess_synthetic_dem", "{region}"),
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/lsmap.yaml"
    shell:
        "cp {input.dem} {output.dem} 2> {log}"


# The demo's inbox DEM (preprocess_synthetic_dem) is not a delivery named "dem.tif".
ruleorder: preprocess_synthetic_dem > preprocess_synthetic_delivery
