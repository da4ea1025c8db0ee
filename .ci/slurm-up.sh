#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the Slurm integration test
# (crates/vrl-cli/tests/slurm.rs): installs Debian's slurm-wlm and munge when missing, creates a munge
# key, starts munged, writes a minimal slurm.conf (this host as controller and only node, no cgroups,
# no accounting database) and starts slurmctld and slurmd, then waits until `sinfo` shows the node idle.
# Needs root or sudo. Idempotent: running it again on a working cluster only checks it.
#
#   bash .ci/slurm-up.sh          # start (or check) the cluster
#   bash .ci/slurm-up.sh down     # stop slurmd, slurmctld and munged
set -euo pipefail

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi

state=/var/spool/vrl-slurm
conf=/etc/slurm/slurm.conf

if [ "${1:-}" = "down" ]; then
    for p in slurmd slurmctld; do
        if [ -f "$state/$p.pid" ]; then $sudo_cmd kill "$(cat "$state/$p.pid")" 2>/dev/null || true; fi
    done
    if [ -f /run/munge/munged.pid ]; then $sudo_cmd kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true; fi
    exit 0
fi

if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "slurm-up: Slurm is already up:"
    sinfo
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    echo "==> installing slurm-wlm and munge"
    $sudo_cmd apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y --no-install-recommends slurm-wlm munge
fi

echo "==> munge"
$sudo_cmd mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    $sudo_cmd dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
$sudo_cmd chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
$sudo_cmd chmod 0700 /etc/munge /var/lib/munge /var/log/munge
$sudo_cmd chmod 0755 /run/munge
$sudo_cmd chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    $sudo_cmd runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 1 20); do
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then break; fi
        sleep 0.5
    done
fi
munge -n | unmunge >/dev/null

echo "==> slurm.conf"
host="$(hostname -s)"
cpus="$(nproc)"
mem_mb="$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)"
$sudo_cmd mkdir -p /etc/slurm "$state/ctld" "$state/d" /var/log/slurm
$sudo_cmd tee "$conf" >/dev/null <<EOF
# Written by .ci/slurm-up.sh: a single-node cluster for tests.
ClusterName=vrl-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
KillWait=10
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
# No cgroups: an empty cgroup.conf (proctrack/linuxproc and task/none do not use it).
echo "# no cgroups (.ci/slurm-up.sh)" | $sudo_cmd tee /etc/slurm/cgroup.conf >/dev/null

echo "==> slurmctld, slurmd"
for p in slurmctld slurmd; do
    if [ -f "$state/$p.pid" ] && kill -0 "$(cat "$state/$p.pid")" 2>/dev/null; then
        $sudo_cmd kill "$(cat "$state/$p.pid")" || true
        sleep 1
    fi
done
$sudo_cmd /usr/sbin/slurmctld -c
$sudo_cmd /usr/sbin/slurmd -c

for i in $(seq 1 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^idle'; then
        echo "slurm-up: node idle after ${i}s"
        sinfo
        exit 0
    fi
    sleep 1
done
echo "slurm-up: the node did not become idle within 60 s" >&2
sinfo >&2 || true
tail -n 30 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
