# lsmap workflow: GF-6 deliveries -> analysis-ready scenes -> landslide maps -> region statistics,
# plus model training and the Table-5 benchmark. Logic lives in the lsmap package; rules are thin.
from snakemake.utils import min_version, validate

min_version("8.20")


configfile: "config.yaml"


validate(config, "lsmap/schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/preprocess.smk"
include: "rules/training.smk"
include: "rules/mapping.smk"
include: "rules/report.smk"
include: "rules/operations.smk"


rule all:
    default_target: True
    input:
        [region_outputs(region) for region in REGIONS],
