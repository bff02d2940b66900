#!/usr/bin/env bash
# A single-node SLURM cluster on this Debian machine, for the tests and for trying the SLURM
# launcher:  bash scripts/slurm_cluster.sh start   (then sinfo, sbatch, -m hydra/launcher=slurm)
#            bash scripts/slurm_cluster.sh stop
# Needs root and apt-get. There is no systemd: munged, slurmctld and slurmd are started here
# and stopped by the PIDs they recorded under $STATE, never by name. No accounting database,
# so sacct is absent (submitit warns and carries on).
set -euo pipefail
STATE=${SLURM_CLUSTER_STATE:-/tmp/dlfoundations-slurm}
CONF=/etc/slurm/slurm.conf

stop() {
  for pid_file in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/munge/munged.pid"; do
    if [ -f "$pid_file" ]; then
      kill "$(cat "$pid_file")" 2>/dev/null || true
      rm -f "$pid_file"
    fi
  done
}

start() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
  stop
  mkdir -p "$STATE/munge" /run/munge /etc/slurm "$STATE/spool/ctld" "$STATE/spool/d"
  chown munge:munge /run/munge "$STATE/munge"
  [ -s /etc/munge/munge.key ] || mungekey --create --force
  runuser -u munge -- munged --pid-file="$STATE/munge/munged.pid"
  node=$(slurmd -C | head -n 1)
  memory=$(sed -E 's/.*RealMemory=([0-9]+).*/\1/' <<<"$node")
  cat >"$CONF" <<CONFIG
# Written by dlfoundations' scripts/slurm_cluster.sh: one node, no accounting.
ClusterName=dlfoundations
SlurmctldHost=$(hostname)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
JobRequeue=1
MinJobAge=600
$(sed -E "s/RealMemory=[0-9]+/RealMemory=$((memory * 9 / 10))/" <<<"$node") State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONFIG
  slurmctld -c
  slurmd -c
  for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
      echo "SLURM cluster up: $(sinfo -h -o '%P %D %T %c CPUs %m MB')"
      return 0
    fi
    sleep 1
  done
  echo "the SLURM node did not become idle in 60 s; see $STATE/slurmctld.log and $STATE/slurmd.log" >&2
  return 1
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: bash scripts/slurm_cluster.sh start|stop" >&2; exit 2 ;;
esac
