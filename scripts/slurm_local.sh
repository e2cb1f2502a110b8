#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for trying sweeps through hydra/launcher=submitit_slurm
# (and for tests/test_slurm.py): munge and Slurm's controller and node daemons, configured in a folder of their
# own, on free local ports; nothing under /etc is read or changed.
#
#   scripts/slurm_local.sh start DIR     configure and start; prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/slurm_local.sh stop DIR      stop the daemons (DIR is kept: logs, state)
#   scripts/slurm_local.sh install       apt-get install slurm-wlm munge (Debian; root)
#
# Then, in the shell that submits: export SLURM_CONF=DIR/slurm.conf (sbatch, squeue, scontrol find the cluster
# through it), e.g.
#   mtbench train -m hydra/launcher=slurm_cluster hydra.launcher.partition=debug method=fixed,mtadam seed=0,1
# The node has this machine's CPUs and memory, one partition `debug` (the default), requeue allowed. Exit status:
# 0 started; 3 the Slurm or munge programs are missing (install them); 1 a daemon did not come up (see DIR/*.log).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
need() { for p in "$@"; do command -v "$p" >/dev/null 2>&1 || { echo "slurm_local: $p not found (scripts/slurm_local.sh install, or apt-get install slurm-wlm munge)" >&2; exit 3; }; done; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

case $cmd in
  install)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge
    exit 0 ;;
  start) ;;
  stop)
    [ -n "$dir" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }
    for pid in "$dir"/slurmd.pid "$dir"/slurmctld.pid "$dir"/munged.pid; do
      if [ -f "$pid" ]; then kill "$(cat "$pid")" 2>/dev/null || true; fi
    done
    sleep 1
    for pid in "$dir"/slurmd.pid "$dir"/slurmctld.pid "$dir"/munged.pid; do
      if [ -f "$pid" ]; then kill -9 "$(cat "$pid")" 2>/dev/null || true; rm -f "$pid"; fi
    done
    exit 0 ;;
  *) echo "usage: $0 start DIR | stop DIR | install" >&2; exit 2 ;;
esac

[ -n "$dir" ] || { echo "usage: $0 start DIR" >&2; exit 2; }
PATH=$PATH:/usr/sbin:/sbin
need munged slurmctld slurmd sbatch scontrol sinfo
mkdir -p "$dir/state" "$dir/spool"
dir=$(cd "$dir" && pwd)
user=$(id -un)
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))

# munge: a key of its own and a socket in DIR
if [ ! -f "$dir/munge.key" ]; then
  head -c 1024 /dev/urandom > "$dir/munge.key"
  chmod 0400 "$dir/munge.key"
fi
munged --key-file="$dir/munge.key" --socket="$dir/munge.socket" --pid-file="$dir/munged.pid" \
  --log-file="$dir/munged.log" --seed-file="$dir/munged.seed" --force

ctl_port=$(free_port); node_port=$(free_port)
cat > "$dir/slurm.conf" <<EOF
# written by scripts/slurm_local.sh: a single-node cluster for tests and trials
ClusterName=mtbench
SlurmctldHost=$host
SlurmUser=$user
SlurmdUser=$user
SlurmctldPort=$ctl_port
SlurmdPort=$node_port
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$SLURM_CONF" -i
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "slurm_local: the node did not come up within 30 s; logs: $dir/slurmctld.log $dir/slurmd.log" >&2
sinfo >&2 || true
exit 1
