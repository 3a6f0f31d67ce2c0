# Scheduled runs: `snakemake --profile profiles/local scheduled_run` (or --profile profiles/slurm)
# runs one `lsmap scheduled-run` pass over operations.inbox: new deliveries are preprocessed,
# mapped and added to results/<region>/inventory.gpkg (lsmap/scheduled.py). The SQLite ledger,
# not file times, decides what is new, so every invocation runs a new pass: its files are named
# by the time the workflow started (logs/scheduled_run/<region>/<stamp>.{log,benchmark.tsv,done}),
# which also keeps one log and one benchmark per pass.
if "operations" in config:
    import time as _time

    PASS_STAMP = _time.strftime("%Y%m%dT%H%M%SZ", _time.gmtime())

    rule scheduled_run:
        input: f"logs/scheduled_run/{config['operations']['region']}/{PASS_STAMP}.done",

    rule scheduled_pass:
        output: touch("logs/scheduled_run/{region}/{stamp}.done"),
        log: log_path("scheduled_run", "{region}", "{stamp}"),
        benchmark: benchmark_path("scheduled_run", "{region}", "{stamp}"),
        wildcard_constraints: stamp="[0-9]{8}T[0-9]{6}Z",
        threads: 4
        resources: mem_mb=24000, runtime=360,
        conda:
            "../envs/lsmap.yaml"
        script: "../workflow_scripts/scheduled_run.py"
