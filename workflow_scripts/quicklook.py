"""Rule quicklook: a scene's natural-colour quicklook PNG and small COG with landslide outlines."""
import contextlib

from lsmap.quicklook import make_quicklook

sm = snakemake  # noqa: F821 (injected by Snakemake)
with open(sm.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    drawn = make_quicklook(sm.input.image, sm.input.landslides, sm.output.png, sm.output.cog,
                           scene_id=sm.wildcards.scene, acquired=sm.params.acquired)
    print(f"quicklook {sm.output.png}: {drawn}")
