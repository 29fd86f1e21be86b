#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the sweep tests and for trying the `slurm` executor.
#
#   scripts/dev/slurm_localhost.sh start DIR   install slurm-wlm, slurmdbd, munge and mariadb-server when
#                                          missing (apt-get, as root), write DIR/slurm.conf, start
#                                          munged, MariaDB + slurmdbd (job accounting: submitit reads
#                                          job states with sacct), slurmctld and slurmd (addresses
#                                          127.0.0.1, free ports), wait until the node is idle;
#                                          prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/dev/slurm_localhost.sh stop DIR    stop the daemons started in DIR
#
# Everything the daemons write (state, spool, logs, database, munge key and socket, pid files)
# stays in DIR.
# Exit status 3 with one line on stderr when the packages or daemons cannot be had (no root, no
# apt-get, a daemon that does not come up): the tests turn that line into a skip.
set -euo pipefail

action="${1:-}"
dir="${2:-}"
[ -n "$action" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
fail() { echo "slurm_localhost: $*" >&2; exit 3; }

stop() {
  for name in slurmd slurmctld slurmdbd mariadbd munged; do
    pidfile="$dir/$name.pid"
    if [ -f "$pidfile" ]; then
      pid="$(cat "$pidfile")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
}

if [ "$action" = stop ]; then stop; exit 0; fi
[ "$action" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

missing=0
for cmd in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd mariadb-install-db; do
  command -v "$cmd" >/dev/null || missing=1
done
if [ "$missing" = 1 ]; then
  [ "$(id -u)" = 0 ] || fail "slurm-wlm/munge are not installed and this is not root (cannot apt-get install)"
  command -v apt-get >/dev/null || fail "slurm-wlm/munge are not installed and there is no apt-get"
  export DEBIAN_FRONTEND=noninteractive
  (apt-get update -qq && apt-get install -y -qq slurm-wlm slurmdbd munge mariadb-server) \
    >"${TMPDIR:-/tmp}/slurm_localhost-apt.log" 2>&1 \
    || fail "apt-get install slurm-wlm slurmdbd munge mariadb-server failed (log: ${TMPDIR:-/tmp}/slurm_localhost-apt.log)"
fi
[ "$(id -u)" = 0 ] || fail "the one-node cluster runs its daemons as root (SlurmUser=root); not root"

mkdir -p "$dir"/{state,spool,log}
dir="$(cd "$dir" && pwd)"
chmod 0700 "$dir"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ctld_port="$(free_port)"
slurmd_port="$(free_port)"
dbd_port="$(free_port)"
db_port="$(free_port)"
db_pass="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
node="$(hostname -s)"
# CPUs and memory as slurmd itself detects them
hw="$(slurmd -C | head -1 | sed -E 's/^NodeName=[^ ]+ //; s/ UpTime=.*//')"

# munge: a key of our own and a socket in DIR (leaves any system munged alone)
dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
chmod 0400 "$dir/munge.key"
munged --force --socket="$dir/munge.socket" --key-file="$dir/munge.key" --pid-file="$dir/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munged.seed" || fail "munged did not start (see $dir/log/munged.log)"

# MariaDB for slurmdbd: its own data folder, TCP on 127.0.0.1 only
if [ ! -d "$dir/mysql/mysql" ]; then
  mariadb-install-db --user=root --datadir="$dir/mysql" --auth-root-authentication-method=normal \
    --skip-test-db >"$dir/log/mariadb-install.log" 2>&1 || { stop; fail "mariadb-install-db failed (see $dir/log/)"; }
fi
nohup mariadbd --user=root --datadir="$dir/mysql" --socket="$dir/mysql.sock" --bind-address=127.0.0.1 \
  --port="$db_port" --pid-file="$dir/mariadbd.pid" --log-error="$dir/log/mariadb.log" --skip-name-resolve \
  >/dev/null 2>&1 &
for _ in $(seq 150); do
  mariadb --socket="$dir/mysql.sock" -u root -e 'SELECT 1' >/dev/null 2>&1 && break
  sleep 0.2
done
mariadb --socket="$dir/mysql.sock" -u root -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$db_pass';
  ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$db_pass';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || { stop; fail "MariaDB did not start (see $dir/log/mariadb.log)"; }

cat >"$dir/slurmdbd.conf" <<CONF
# accounting daemon of the one-node cluster written by scripts/dev/slurm_localhost.sh
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
DbdAddr=127.0.0.1
DbdHost=$node
DbdPort=$dbd_port
SlurmUser=root
PidFile=$dir/slurmdbd.pid
LogFile=$dir/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=$db_pass
StorageLoc=slurm_acct_db
CONF
chmod 0600 "$dir/slurmdbd.conf"

cat >"$dir/slurm.conf" <<CONF
# one-node cluster written by scripts/dev/slurm_localhost.sh
ClusterName=hashbench
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
# for a slurmdbd connection this names the munge socket
AccountingStoragePass=$dir/munge.socket
MpiDefault=none
ReturnToService=2
# finished jobs stay visible to scontrol for 10 minutes; a cancelled job's processes get 5 s
MinJobAge=600
KillWait=5
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"

slurmdbd || { stop; fail "slurmdbd did not start (see $dir/log/slurmdbd.log)"; }
for _ in $(seq 50); do
  timeout 5 sacctmgr -n list cluster >/dev/null 2>&1 && break
  sleep 0.2
done
timeout 20 sacctmgr -i add cluster hashbench >/dev/null 2>&1 || true
timeout 10 sacctmgr -n list cluster format=cluster >"$dir/log/sacctmgr.log" 2>&1 || true
grep -q hashbench "$dir/log/sacctmgr.log" \
  || { stop; fail "slurmdbd is not answering: $(tail -1 "$dir/log/sacctmgr.log") (see $dir/log/)"; }
slurmctld -f "$SLURM_CONF" || { stop; fail "slurmctld did not start (see $dir/log/slurmctld.log)"; }
slurmd -f "$SLURM_CONF" -N "$node" || { stop; fail "slurmd did not start (see $dir/log/slurmd.log)"; }
for _ in $(seq 100); do
  if sinfo -h -o %t 2>/dev/null | grep -q -E '^idle'; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.2
done
stop
fail "the node did not become idle within 20 s (see $dir/log/)"
