"""Rule export_region: the region's polygons as RFC 7946 GeoJSON and KML."""
import contextlib

from lsmap.export import export_region

sm = snakemake  # noqa: F821 (injected by Snakemake)
with open(sm.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
    count = export_region(sm.input[0], sm.output.geojson, sm.output.kml,
                          name=f"lsmap landslides: {sm.wildcards.region}")
    print(f"exported {count} polygons to {sm.output.geojson} and {sm.output.kml}")
