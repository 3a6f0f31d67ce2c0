"""Rule synthetic_truth_iou: the demo map scored against the landscape's own ground truth."""
import json
import logging

from lsmap.fileio import atomic_output
from lsmap.synthetic import truth_scores

sm = snakemake  # noqa: F821 (injected by Snakemake)
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
scores = truth_scores(sm.input.mask, sm.input.truth)
with atomic_output(sm.output[0]) as tmp:
    tmp.write_text(json.dumps(scores, indent=2))
logging.info("demo scene vs ground truth: %s", scores)
