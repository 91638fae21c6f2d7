#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the SLURM tests and for trying `bench run --executor slurm`
# on one box. Debian/Ubuntu packages (slurm-wlm, slurmctld, slurmd, munge), every daemon run as root with its own
# PID file; no systemd needed (works in containers whose PID 1 is not an init).
#
#   scripts/slurm-local-cluster.sh start    install missing packages (apt), write the config, start munged,
#                                           slurmctld and slurmd, wait until the node takes jobs; idempotent
#   scripts/slurm-local-cluster.sh stop     cancel our jobs, stop the daemons (by PID file), remove leftovers
#   scripts/slurm-local-cluster.sh status   daemons and node state; exit 0 if the node takes jobs
#   scripts/slurm-local-cluster.sh env      the line to source: SLURM_CONF=...
#
# Then:  export SLURM_CONF=/tmp/bench-slurm/slurm.conf   (what `env` prints)
#        bench run sweeps/smoke.yaml --executor slurm --profile sweeps/profiles/local-cluster.yaml
#
# Settings (environment): BENCH_SLURM_DIR state/config/logs (default /tmp/bench-slurm); BENCH_SLURM_CPUS CPUs the
# node offers (default: nproc; more lets more one-CPU jobs share the cores); BENCH_SLURM_PORT first of two TCP ports
# (default 6817); BENCH_SLURM_NO_INSTALL=1 never calls apt-get; BENCH_SLURM_TIMEOUT seconds to wait for the node (60);
# BENCH_SLURM_WIPE=1 with stop deletes the state folder.
#
# No accounting daemon (slurmdbd) is run, so `sacct` does not work here; the harness never calls it.
set -euo pipefail

D=${BENCH_SLURM_DIR:-/tmp/bench-slurm}
CONF=$D/slurm.conf
PORT=${BENCH_SLURM_PORT:-6817}
NODE=$(hostname -s)
PACKAGES=(slurm-wlm slurmctld slurmd slurm-client munge)
export SLURM_CONF=$CONF

say() { echo "[slurm-local-cluster] $*" >&2; }
fail() { say "error: $*"; exit 1; }
live() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null || true; }

install_packages() {
  local missing=()
  for tool in munged slurmctld slurmd sinfo; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return
  [ "${BENCH_SLURM_NO_INSTALL:-0}" = 1 ] && fail "missing ${missing[*]} (BENCH_SLURM_NO_INSTALL=1: not installing)"
  command -v apt-get >/dev/null || fail "missing ${missing[*]} and no apt-get to install ${PACKAGES[*]}"
  say "installing ${PACKAGES[*]} (missing: ${missing[*]})"
  local log=$D/apt.log
  export DEBIAN_FRONTEND=noninteractive
  # A fresh container has no package lists: update only when the first try fails.
  apt-get install -y --no-install-recommends "${PACKAGES[@]}" >"$log" 2>&1 \
    || { apt-get update >>"$log" 2>&1 && apt-get install -y --no-install-recommends "${PACKAGES[@]}" >>"$log" 2>&1; } \
    || fail "apt-get install failed; see $log"
}

write_config() {
  local cpus mem_mb
  cpus=${BENCH_SLURM_CPUS:-$(nproc)}
  mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)  # slurmd drains a node that claims more than it has
  cat >"$CONF.new" <<EOF
# Written by scripts/slurm-local-cluster.sh; edits are overwritten at the next start.
ClusterName=bench-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
# Everything as root: no slurm-owned directories to prepare.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Our own munged socket (not the system one). cred_expire also sets how long a requeued job waits before it may
# start again (cred_expire + 1 s); the default 120 s would make every requeue take two minutes.
AuthInfo=socket=$D/munge/munge.socket,cred_expire=10
StateSaveLocation=$D/ctld
SlurmdSpoolDir=$D/slurmd
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
# Processes tracked through /proc: no writable cgroup filesystem needed (containers, CI).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job that asks for no memory would otherwise get the whole node and run alone.
DefMemPerCPU=$((mem_mb / cpus))
SchedulerType=sched/backfill
# The defaults suit large clusters: they delay back-to-back and requeued jobs by seconds to tens of seconds.
SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_interval=2
# No slurmdbd: sacct cannot work, and nothing in the harness uses it.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
# Finished jobs stay visible to squeue/scontrol for an hour.
MinJobAge=3600
# Seconds between SIGTERM and SIGKILL when a job is cancelled or requeued.
KillWait=5
Waittime=0
# Trust the CPUs/memory below even when they exceed the hardware (BENCH_SLURM_CPUS > cores).
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  if [ -f "$CONF" ] && cmp -s "$CONF" "$CONF.new"; then rm "$CONF.new"; return; fi
  if live "$D/run/slurmctld.pid" || live "$D/run/slurmd.pid"; then
    say "warning: the configuration changed while the daemons run; 'stop' then 'start' to apply it"
  fi
  mv "$CONF.new" "$CONF"
}

start() {
  [ "$(id -u)" = 0 ] || fail "must run as root (slurmd runs jobs as any user; here every daemon runs as root)"
  mkdir -p "$D"/{ctld,slurmd,run,log,munge}
  install_packages
  # munged refuses a socket directory that is not world-executable and a key readable by others.
  chmod 755 "$D" "$D/munge"
  write_config
  # slurmd and srun look the node name up; all traffic goes to 127.0.0.1 anyway.
  getent hosts "$NODE" >/dev/null || { say "adding '127.0.0.1 $NODE' to /etc/hosts"; echo "127.0.0.1 $NODE" >>/etc/hosts; }

  local sock=$D/munge/munge.socket
  if ! live "$D/munge/munged.pid"; then
    [ -s "$D/munge/munge.key" ] || head -c 1024 /dev/urandom >"$D/munge/munge.key"
    chmod 400 "$D/munge/munge.key"
    rm -f "$sock" "$sock.lock"
    munged --key-file="$D/munge/munge.key" --socket="$sock" --pid-file="$D/munge/munged.pid" \
      --log-file="$D/log/munged.log" --seed-file="$D/munge/munged.seed" || fail "munged did not start: $D/log/munged.log"
  fi
  for _ in $(seq 50); do munge -n -S "$sock" 2>/dev/null | unmunge -S "$sock" >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n -S "$sock" | unmunge -S "$sock" >/dev/null || fail "munge credential round trip failed"

  # -c: forget jobs of an earlier run (job ids restart at 1); -i: first start has no state files.
  live "$D/run/slurmctld.pid" || slurmctld -f "$CONF" -c -i || fail "slurmctld did not start: $D/log/slurmctld.log"
  live "$D/run/slurmd.pid" || slurmd -f "$CONF" -N "$NODE" || fail "slurmd did not start: $D/log/slurmd.log"

  local deadline=$(($(date +%s) + ${BENCH_SLURM_TIMEOUT:-60})) state=""
  while :; do
    state=$(node_state)
    case "$state" in
      idle | mixed | allocated) break ;;
      down* | drain*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;  # slurmd came back
    esac
    [ "$(date +%s)" -lt "$deadline" ] || fail "node $NODE is '$state', not idle, after ${BENCH_SLURM_TIMEOUT:-60} s; logs in $D/log"
    sleep 0.2
  done
  echo "slurm ready: node $NODE $state; export SLURM_CONF=$CONF"
}

stop_daemon() {  # name pidfile
  if ! live "$2"; then rm -f "$2"; return; fi
  local pid
  pid=$(cat "$2")
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$2"
  say "stopped $1 ($pid)"
}

stop() {
  if live "$D/run/slurmctld.pid"; then
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
      say "cancelling jobs $jobs"
      scancel $jobs 2>/dev/null || true
      for _ in $(seq 100); do [ -z "$(squeue -h -o %A -t PD,R,CG,S 2>/dev/null)" ] && break; sleep 0.1; done
    fi
  fi
  stop_daemon slurmd "$D/run/slurmd.pid"
  # Job steps outlive a killed slurmd: end those of this cluster (recognised by our SLURM_CONF), nothing else.
  local pid
  for proc in /proc/[0-9]*; do
    [ "$(cat "$proc/comm" 2>/dev/null)" = slurmstepd ] || continue
    tr '\0' '\n' <"$proc/environ" 2>/dev/null | grep -qx "SLURM_CONF=$CONF" || continue
    pid=${proc#/proc/}
    say "killing leftover slurmstepd $pid and its process group"
    kill -KILL -- "-$(ps -o pgid= "$pid" | tr -d ' ')" "$pid" 2>/dev/null || true
  done
  stop_daemon slurmctld "$D/run/slurmctld.pid"
  stop_daemon munged "$D/munge/munged.pid"
  [ "${BENCH_SLURM_WIPE:-0}" = 1 ] && rm -rf "$D" && say "removed $D"
  echo "slurm stopped"
}

status() {
  for daemon in munge/munged run/slurmctld run/slurmd; do
    if live "$D/$daemon.pid"; then echo "$(basename "$daemon"): running (pid $(cat "$D/$daemon.pid"))"
    else echo "$(basename "$daemon"): stopped"; fi
  done
  local state
  state=$(node_state)
  echo "node $NODE: ${state:-unknown}"
  case "$state" in idle | mixed | allocated) return 0 ;; *) return 1 ;; esac
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
