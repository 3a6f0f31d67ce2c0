# Training and the Table-5 benchmark. Paths:
#   <training.dataset>/dataset.json                     (imported when training.source is set)
#   results/train/<model>/{best.pt,history.csv,curves.png}   (+ last.pt: the resume state)
#   results/benchmark/{table5.csv,table5.md,samples.png}
TRAINING = config["training"]
DATASET = TRAINING["dataset"]
TRAIN_DIR = f"{RESULTS}/train"
BENCHMARK_DIR = f"{RESULTS}/benchmark"
TRAIN_OUTPUTS = ("best.pt", "history.csv", "curves.png")


if "source" in TRAINING:

    rule import_training_dataset:
        output:
            f"{DATASET}/dataset.json",
        params:
            source=TRAINING["source"],
            dataset=DATASET,
        log:
            log_path("import_training_dataset", "dataset"),
        benchmark:
            benchmark_path("import_training_dataset", "dataset")
        threads: 1
        resources:
            mem_mb=8000,
            runtime=120,
        conda:
            "../envs/lsmap.yaml"
        script:
            "../workflow_scripts/import_dataset.py"


rule train_model:
    input:
        dataset=training_dataset,
    output:
        best=f"{TRAIN_DIR}/{{model}}/best.pt",
        history=f"{TRAIN_DIR}/{{model}}/history.csv",
        curves=report(
            f"{TRAIN_DIR}/{{model}}/curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            labels={"model": "{model}"},
        ),
    params:
        dataset=DATASET,
        out_dir=lambda wildcards: f"{TRAIN_DIR}/{wildcards.model}",
    log:
        log_path("train_model", "{model}"),
    benchmark:
        benchmark_path("train_model", "{model}")
    threads: workflow.cores
    resources:
        mem_mb=16000,
        runtime=1440,  # 100 epochs on one GPU
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/train_model.py"


for _model in MODELS:

    rule:
        name:
            f"train_{_model}"
        input:
            [f"{TRAIN_DIR}/{_model}/{name}" for name in TRAIN_OUTPUTS],


rule train_all:
    input:
        expand(f"{TRAIN_DIR}/{{model}}/{{name}}", model=MODELS, name=TRAIN_OUTPUTS),


rule benchmark_models:
    input:
        checkpoints=expand(f"{TRAIN_DIR}/{{model}}/best.pt", model=MODELS),
        dataset=training_dataset,
    output:
        table=report(
            f"{BENCHMARK_DIR}/table5.csv",
            caption="../report/table5.rst",
            category="Benchmark",
            labels={"file": "Table 5"},
        ),
        markdown=f"{BENCHMARK_DIR}/table5.md",
        samples=report(
            f"{BENCHMARK_DIR}/samples.png",
            caption="../report/samples.rst",
            category="Benchmark",
            labels={"file": "sample predictions"},
        ),
    params:
        dataset=DATASET,
        models=MODELS,
    log:
        log_path("benchmark_models", "table5"),
    benchmark:
        benchmark_path("benchmark_models", "table5")
    threads: workflow.cores
    resources:
        mem_mb=16000,
        runtime=120,
    conda:
        "../envs/lsmap.yaml"
    script:
        "../workflow_scripts/benchmark.py"


rule benchmark_all:
    input:
        rules.benchmark_models.output,
