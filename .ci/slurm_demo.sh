#!/usr/bin/env bash
# The SLURM profile on a real single-node SLURM cluster (README "Testing on a cluster").
#
#   sudo .ci/slurm_demo.sh          # CI runs it from .ci/run; a developer runs it the same way
#
# As root on Debian: installs slurm-wlm, munge and slurm-client if missing; writes a slurm.conf
# for this machine (hostname, nproc, memory; no accounting database) into a scratch folder;
# starts its own munged, slurmctld and slurmd on private ports and socket (nothing in /etc is
# changed but /etc/slurm/slurm.conf, a link to that file while the test runs, because the plugin's
# job step drops SLURM_CONF before its inner srun; a machine with its own slurm.conf is refused,
# not changed); waits until `srun hostname` answers; runs
# `snakemake --profile profiles/slurm map_demo` under `timeout` in a scratch copy of the project;
# maps the same scene with the same model locally and checks that probability.tif and
# landslides.gpkg are equal; checks that a job the cluster refuses fails the run with sbatch's
# message; stops the daemons it started, by PID. Every wait has a deadline:
# it fails, it never hangs. Budget: LSMAP_SLURM_TIMEOUT_S (default 420 s) for the workflow.
set -euo pipefail

PROJECT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$PROJECT/.venv/bin/python}"
WORKFLOW_TIMEOUT_S="${LSMAP_SLURM_TIMEOUT_S:-420}"
CTLD_PORT="${LSMAP_SLURMCTLD_PORT:-16817}"
SLURMD_PORT="${LSMAP_SLURMD_PORT:-16818}"
WORK="$(mktemp -d /tmp/lsmap-slurm.XXXXXX)"
STARTED_PIDS=()
CHILD=""
SLURMCTLD_STARTED=""
LINKED_CONF=""
SYSTEM_CONF=/etc/slurm/slurm.conf

log() { echo "[slurm_demo $(date -u +%H:%M:%S)] $*"; }
fail() { echo "[slurm_demo] FAILED: $*" >&2; exit 1; }

stop_daemons() {
  # Only what this script started, newest first, by PID; then wait a few seconds for each.
  local pid i
  if [ -n "$CHILD" ]; then kill "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; fi
  if [ -n "$SLURMCTLD_STARTED" ]; then
    # Jobs of this test cluster only (SLURM_CONF is ours): their slurmstepd would outlive slurmd.
    timeout 10 scancel --user "$(id -un)" 2>/dev/null || true
    sleep 1
  fi
  for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
    pid="${STARTED_PIDS[i]}"
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  [ -z "$LINKED_CONF" ] || rm -f "$SYSTEM_CONF"
  log "daemons stopped (${STARTED_PIDS[*]:-none}); files in $WORK"
}

on_exit() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -d "$WORK" ]; then
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "== tail $f" >&2; tail -n 20 "$f" >&2; }; done
  fi
  stop_daemons
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || fail "run as root: it starts munged, slurmctld and slurmd"
[ -x "$PYTHON" ] || fail "no Python at $PYTHON (run 'make test' once, or set PYTHON=)"

install_slurm() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
     && command -v sbatch >/dev/null; then
    return
  fi
  log "installing slurm-wlm munge slurm-client"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq \
     slurm-wlm munge slurm-client >/dev/null) || fail "apt-get install slurm-wlm munge slurm-client failed"
}

start_munge() {
  # A private munged (own socket and key) so that a machine's own munge is never touched.
  chmod 0755 "$WORK"
  mkdir -p "$WORK/munge"
  chown munge:munge "$WORK/munge" && chmod 0711 "$WORK/munge"
  dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1 count=1024 status=none
  chown munge:munge "$WORK/munge/munge.key" && chmod 0400 "$WORK/munge/munge.key"
  runuser -u munge -- munged --foreground --force --socket="$WORK/munge/munge.socket" \
    --key-file="$WORK/munge/munge.key" --pid-file="$WORK/munge/munged.pid" \
    --seed-file="$WORK/munge/munged.seed" --log-file="$WORK/munge/munged.log" \
    >"$WORK/munged.log" 2>&1 &
  STARTED_PIDS+=("$!")
  wait_for 20 "munged" munge --socket="$WORK/munge/munge.socket" --no-input
  STARTED_PIDS+=("$(cat "$WORK/munge/munged.pid")")  # munged itself, under runuser
}

write_slurm_conf() {
  local host cpus mem_mb
  host="$(hostname -s)"
  cpus="$(nproc)"
  # What slurmd will find, less 5 % for the daemons and the OS (slurmd refuses a node that
  # reports less than RealMemory).
  mem_mb="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.95}' /proc/meminfo)"
  mkdir -p "$WORK/state" "$WORK/spool"
  cat >"$WORK/slurm.conf" <<EOF
# Written by .ci/slurm_demo.sh for a one-node test cluster on $host.
ClusterName=lsmapci
SlurmctldHost=$host
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$WORK/munge/munge.socket
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# No accounting database (like many small clusters): sacct cannot answer, squeue must.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue for 5 min (the plugin polls at most every 3 min).
MinJobAge=300
SlurmdTimeout=60
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$WORK/slurm.conf"
  # Job steps find the configuration only where a real cluster keeps it (see the header).
  if [ -L "$SYSTEM_CONF" ] && [[ "$(readlink "$SYSTEM_CONF")" == /tmp/lsmap-slurm.* ]]; then
    rm -f "$SYSTEM_CONF"  # left by an earlier run that was killed
  fi
  [ ! -e "$SYSTEM_CONF" ] || fail "$SYSTEM_CONF exists: this machine has its own SLURM; run the test where it has none (CI)"
  mkdir -p "$(dirname "$SYSTEM_CONF")"
  ln -s "$SLURM_CONF" "$SYSTEM_CONF"
  LINKED_CONF=1
  log "slurm.conf: node $host, $cpus CPUs, $mem_mb MB, ports $CTLD_PORT/$SLURMD_PORT"
}

start_slurm() {
  slurmctld -D -i -f "$SLURM_CONF" >"$WORK/slurmctld.out.log" 2>&1 &
  STARTED_PIDS+=("$!")
  SLURMCTLD_STARTED=1
  slurmd -D -f "$SLURM_CONF" >"$WORK/slurmd.out.log" 2>&1 &
  STARTED_PIDS+=("$!")
  wait_for 60 "srun hostname" timeout 20 srun --time=1 hostname
}

bounded() {
  # bounded SECONDS LOG COMMAND...: COMMAND under `timeout`, in the background so that a TERM to
  # this script (CI's own timeout) is handled at once and stops it; returns COMMAND's status.
  local seconds="$1" output="$2"
  shift 2
  timeout --kill-after=20 "$seconds" "$@" >"$output" 2>&1 &
  CHILD=$!
  local rc=0
  wait "$CHILD" || rc=$?
  CHILD=""
  return "$rc"
}

wait_for() {
  # wait_for SECONDS WHAT COMMAND...: retry COMMAND each second until it succeeds or time is up.
  local seconds="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    for pid in "${STARTED_PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null || fail "a daemon (pid $pid) exited while waiting for $what"
    done
    [ "$SECONDS" -lt "$deadline" ] || fail "$what did not answer within $seconds s"
    sleep 1
  done
  log "$what answers"
}

run_workflow_on_slurm() {
  # A scratch copy of the project (tracked and untracked, not ignored files) with the shared
  # .venv: results/, logs/ and .snakemake/ must be on a filesystem the node sees (here: local).
  mkdir -p "$WORK/project"
  (cd "$PROJECT" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$WORK/project")
  ln -s "$(cd "$PROJECT" && readlink -f .venv)" "$WORK/project/.venv"
  log "snakemake --profile profiles/slurm map_demo (timeout ${WORKFLOW_TIMEOUT_S} s)"
  local started=$SECONDS rc=0
  bounded "$WORKFLOW_TIMEOUT_S" "$WORK/snakemake.log" env -C "$WORK/project" PATH="$WORK/project/.venv/bin:$PATH" \
    PYTHONPATH="$WORK/project" snakemake --profile profiles/slurm map_demo || rc=$?
  tail -n 5 "$WORK/snakemake.log"
  [ "$rc" != 124 ] && [ "$rc" != 137 ] || fail "snakemake did not finish within ${WORKFLOW_TIMEOUT_S} s (log: $WORK/snakemake.log)"
  [ "$rc" = 0 ] || fail "snakemake --profile profiles/slurm map_demo exited $rc (log: $WORK/snakemake.log)"
  grep -q "submitted with SLURM jobid" "$WORK/snakemake.log" || fail "no job was submitted to SLURM (log: $WORK/snakemake.log)"
  log "SLURM run done in $((SECONDS - started)) s: $(grep -c 'submitted with SLURM jobid' "$WORK/snakemake.log") jobs submitted"
}

compare_with_local_run() {
  # The same scene, model and mapping settings through `lsmap map` in this process, no SLURM.
  local results="$WORK/project/results/demo" local_out="$WORK/local"
  log "mapping the demo scene locally for comparison"
  local rc=0
  bounded 300 "$WORK/compare.log" env -C "$WORK/project" PYTHONPATH="$WORK/project" "$PYTHON" \
    .ci/compare_local_map.py "$results" "$local_out" || rc=$?
  cat "$WORK/compare.log"
  [ "$rc" = 0 ] || fail "the SLURM run's outputs differ from the local run's or the local map failed (exit $rc)"
}

check_refused_job_fails() {
  # A job the cluster refuses (here: a partition it does not have) fails the run with sbatch's
  # message, within a minute, never a hang.
  local rc=0
  log "a refused job: slurm_partition=nonexistent"
  bounded 120 "$WORK/refused.log" env -C "$WORK/project" PATH="$WORK/project/.venv/bin:$PATH" \
    PYTHONPATH="$WORK/project" snakemake --profile profiles/slurm results/demo/demo_scene/truth_iou.json \
    --forcerun synthetic_truth_iou --default-resources slurm_partition=nonexistent || rc=$?
  [ "$rc" != 124 ] && [ "$rc" != 137 ] || fail "a refused job made snakemake hang (log: $WORK/refused.log)"
  [ "$rc" != 0 ] || fail "a job for a nonexistent partition did not fail the run (log: $WORK/refused.log)"
  grep -q -i "invalid partition" "$WORK/refused.log" || fail "sbatch's message is not in the log ($WORK/refused.log)"
  log "refused job: snakemake exited $rc with: $(grep -i -m1 -o 'sbatch: error: .*partition[^.]*' "$WORK/refused.log")"
}

install_slurm
write_slurm_conf
start_munge
start_slurm
run_workflow_on_slurm
compare_with_local_run
check_refused_job_fails
log "OK: the SLURM profile mapped the demo and its outputs equal a local run's"
