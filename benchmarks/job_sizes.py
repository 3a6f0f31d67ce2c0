"""What each cluster job asks for against what it used: the rules' `mem_mb`/`runtime` (as
Snakemake evaluates them for the SLURM profile, inputs on disk) beside the peak RSS and wall time
in the jobs' `*.benchmark.tsv` from a finished run.

    snakemake --profile profiles/local map_demo             # any finished run with benchmark files
    .venv/bin/python benchmarks/job_sizes.py map_demo       # one line per job, then a verdict

A job whose measured peak RSS is above its request, or whose time is above its runtime, is
flagged and the script exits 1: the rule's resources need raising (rules/*.smk).
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def dry_run_jobs(output: str) -> list[dict]:
    """The jobs of a Snakemake dry run's output: rule, wildcards, threads and resources of each."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        header = re.match(r"(?:local)?rule (\w+):", block)
        if not header:
            continue
        fields = dict(re.findall(r"^\s{4}(\w+): (.*)$", block, re.M))
        resources = dict(item.split("=", 1) for item in fields.get("resources", "").split(", ") if "=" in item)
        jobs.append({"rule": header.group(1), "wildcards": fields.get("wildcards", ""),
                     "threads": int(fields.get("threads", 1)), "resources": resources,
                     "benchmark": fields.get("benchmark")})
    return jobs


def measured(benchmark: Path) -> tuple[float, float] | None:
    """(seconds, max_rss MB) of the last run recorded in a Snakemake benchmark file."""
    if not benchmark.is_file():
        return None
    rows = list(csv.DictReader(benchmark.open(), delimiter="\t"))
    return (float(rows[-1]["s"]), float(rows[-1]["max_rss"])) if rows else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="+")
    parser.add_argument("--profile", default="profiles/slurm")
    args = parser.parse_args(argv)
    command = [sys.executable, "-m", "snakemake", *args.targets, "--profile", args.profile, "--dry-run", "--forceall"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT, timeout=600)
    if result.returncode != 0:
        print(result.stdout[-2000:] + result.stderr[-2000:], file=sys.stderr)
        return 2
    print(f"{'rule':<30} {'wildcards':<42} {'s':>8} {'runtime s':>9} {'RSS MB':>8} {'mem_mb':>7} {'x':>5}")
    over = []
    for job in dry_run_jobs(result.stdout + result.stderr):
        figures = measured(PROJECT / job["benchmark"]) if job["benchmark"] else None
        if figures is None or "mem_mb" not in job["resources"]:
            continue
        seconds, rss = figures
        if "TBD" in job["resources"]["mem_mb"] + job["resources"].get("runtime", ""):
            print(f"{job['rule']:<30} {job['wildcards'][:42]:<42} {seconds:8.1f} {'TBD':>9} {rss:8.0f} {'TBD':>7}"
                  "  (sized from a temporary input no longer on disk)")
            continue
        mem_mb, runtime_s = float(job["resources"]["mem_mb"]), 60 * float(job["resources"]["runtime"])
        print(f"{job['rule']:<30} {job['wildcards'][:42]:<42} {seconds:8.1f} {runtime_s:9.0f} {rss:8.0f} "
              f"{mem_mb:7.0f} {mem_mb / max(rss, 1):5.1f}")
        if rss > mem_mb or seconds > runtime_s:
            over.append(job["rule"])
    print("every job within its request" if not over else f"over their request: {', '.join(over)}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
