#!/usr/bin/env bash
# A single-node Slurm on this Debian machine, as root, for the Slurm tests (tests/test_slurm.py):
#   bash scripts/launch/slurm_local.sh start    # install (apt) if needed, start munged, slurmctld, slurmd
#   bash scripts/launch/slurm_local.sh stop
# No systemd: the daemons are started directly. Accounting is off (sacct does not work; submitit
# only warns). One node, NodeAddr 127.0.0.1, with this machine's CPUs and memory.
set -euo pipefail
action="${1:-start}"
conf_dir=/etc/slurm
state=/var/spool/slurmctld

stop() {
    for daemon in slurmd slurmctld munged; do
        pid_file="/run/${daemon}.pid"
        [[ "$daemon" == munged ]] && pid_file=/run/munge/munged.pid
        if [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
            kill "$(cat "$pid_file")" || true
        else  # no pid file (removed, or never written): the daemon by its exact name
            pkill -x "$daemon" 2>/dev/null || true
        fi
    done
    pkill -x slurmscriptd 2>/dev/null || true
}

if [[ "$action" == stop ]]; then stop; exit 0; fi
if [[ "$action" != start ]]; then echo "usage: $0 start|stop" >&2; exit 2; fi
if [[ "$(id -u)" != 0 ]]; then echo "error: needs root (apt-get, daemons)" >&2; exit 2; fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null; }
fi
if scontrol ping 2>/dev/null | grep -q "is UP"; then echo "slurm already up"; exit 0; fi

host="$(hostname -s)"
cpus="$(nproc)"
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p "$conf_dir" "$state" /var/spool/slurmd /var/log/slurm /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
cat > "$conf_dir/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobRequeue=1
ReturnToService=2
StateSaveLocation=${state}
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MinJobAge=300
KillWait=30
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x munged >/dev/null || runuser -u munge -- munged
pgrep -x slurmctld >/dev/null || slurmctld -i
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE "idle|mixed|allocated"; then echo "slurm up: $(sinfo -h -o '%P %D %T %c')"; exit 0; fi
    sleep 1
done
echo "error: slurm did not come up; see /var/log/slurm/" >&2
exit 1
