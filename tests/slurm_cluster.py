"""A real single-node SLURM cluster for the tests, started from Debian's packages as root.

Five daemons, each a foreground child of the test process, all state in one folder:
``munged`` (authentication), ``mariadbd`` (accounting database: a fresh datadir),
``slurmdbd`` (accounting: submitit reads job states with ``sacct``, and without it a cancelled
job looks like one still running), ``slurmctld`` and ``slurmd`` (one node with this machine's
CPUs and memory as ``slurmd -C`` reports them, one partition). ``ProctrackType=proctrack/
linuxproc`` and ``TaskPlugin=task/none``: no cgroups needed. Every port is a free one picked at
start, so two clusters (two xdist workers) do not collide.

Clients (``sbatch``, ``sacct``, ``scancel``, submitit) find it through ``$SLURM_CONF``, which
:func:`start` sets; :meth:`Cluster.stop` cancels what is still queued, stops the daemons it
started (by pid) and restores ``$SLURM_CONF``.

Debian 12: ``apt-get install slurm-wlm slurmdbd munge mariadb-server`` (as ``.ci/run`` does).
Run this file to start a cluster by hand: ``python tests/slurm_cluster.py /tmp/slurm-x``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# (executable, Debian package) for every program start() runs
PROGRAMS = {"munged": "munge", "mungekey": "munge", "mariadb-install-db": "mariadb-server",
            "mariadbd": "mariadb-server", "slurmdbd": "slurmdbd", "slurmctld": "slurm-wlm",
            "slurmd": "slurm-wlm", "sacctmgr": "slurm-wlm", "sinfo": "slurm-wlm",
            "sbatch": "slurm-wlm", "sacct": "slurm-wlm", "scancel": "slurm-wlm",
            "squeue": "slurm-wlm", "srun": "slurm-wlm"}
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
CLUSTER = "asgantest"
PARTITION = "debug"


def cannot_start() -> str | None:
    """Why this machine cannot start the cluster (None: it can): not root, or a program
    missing (naming the Debian packages to install)."""
    if os.geteuid() != 0:
        return "the SLURM daemons run as root here, and the tests are not root"
    missing = sorted({pkg for exe, pkg in PROGRAMS.items() if _which(exe) is None})
    if missing:
        return (f"SLURM test cluster: install {' '.join(missing)} "
                "(apt-get install slurm-wlm slurmdbd munge mariadb-server)")
    return None


def _which(exe: str) -> str | None:
    return shutil.which(exe) or shutil.which(exe, path=os.pathsep.join(SBIN))


def _die_with_parent() -> None:
    """preexec_fn of every daemon: SIGTERM when the process that started it dies, so a test
    session killed before its teardown leaves no daemon behind (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    """A running cluster: its folder, ``slurm.conf``, partition and the daemons started."""

    root: Path
    conf: Path
    node: str
    partition: str = PARTITION
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    old_conf: str | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> str:
        """Run a SLURM client command against this cluster; its stdout."""
        res = subprocess.run([_which(argv[0]) or argv[0], *argv[1:]], env=self.env(),
                             capture_output=True, text=True, timeout=timeout)
        if check and res.returncode:
            raise RuntimeError(f"{' '.join(argv)} exited {res.returncode}: "
                               f"{(res.stderr or res.stdout).strip()[-500:]}\n{self.logs()}")
        return res.stdout

    def state(self, job_id: str) -> str:
        """The accounting state of one job (``123`` or ``123_4``): COMPLETED, CANCELLED..."""
        out = self.run("sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", job_id.split("_")[0])
        for line in out.splitlines():
            jid, state = line.split("|")
            if jid == job_id:
                return state.split()[0]
        return "UNKNOWN"

    def logs(self, tail: int = 15) -> str:
        """The last lines of every daemon log (for error messages)."""
        parts = []
        for log in sorted((self.root / "log").glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel every job, wait for them to leave the node, stop the daemons (slurmd first,
        mariadbd and munged last) and restore ``$SLURM_CONF``."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "-u", "root", check=False)
            t0 = time.time()
            while time.time() - t0 < 20 and self.run("squeue", "-h", check=False).strip():
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = self.old_conf


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _wait(what: str, ok, cluster: Cluster, timeout: float) -> None:
    t0 = time.time()
    while True:
        for name, proc in cluster.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode} while waiting for {what}"
                                   f"\n{cluster.logs()}")
        if ok():
            return
        if time.time() - t0 > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n"
                               f"{cluster.logs()}")
        time.sleep(0.2)


def start(root: Path, timeout: float = 90) -> Cluster:
    """Start the cluster with all its state in ``root`` (created); returns once ``sinfo``
    shows the node idle. On any failure the daemons already started are stopped again."""
    root = Path(root).resolve()
    for d in ("log", "run", "state", "spool", "db"):
        (root / d).mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # munged refuses a world-writable path, slurmd needs to traverse it
    node = f"asgan{os.getpid()}"
    ports = {k: _free_port() for k in ("db", "dbd", "ctld", "slurmd")}
    cluster = Cluster(root=root, conf=root / "slurm.conf", node=node,
                      old_conf=os.environ.get("SLURM_CONF"))
    munge_socket = root / "run" / "munge.socket"
    try:
        _start_munged(cluster, munge_socket)
        _start_mariadbd(cluster, ports["db"])
        _wait("munged and mariadbd", lambda: munge_socket.exists() and _port_open(ports["db"]),
              cluster, timeout)
        _write_confs(cluster, ports, munge_socket)
        os.environ["SLURM_CONF"] = str(cluster.conf)
        _start_daemon(cluster, "slurmdbd", "-D")
        _wait("slurmdbd", lambda: _port_open(ports["dbd"]), cluster, timeout)
        cluster.run("sacctmgr", "-i", "add", "cluster", CLUSTER)
        _start_daemon(cluster, "slurmctld", "-D")
        _wait("slurmctld", lambda: _port_open(ports["ctld"]), cluster, timeout)
        _start_daemon(cluster, "slurmd", "-D", "-N", node)
        _wait(f"node {node} idle in sinfo", lambda: cluster.run(
            "sinfo", "-h", "-N", "-n", node, "-o", "%t", check=False).strip() == "idle",
            cluster, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _start_munged(cluster: Cluster, munge_socket: Path) -> None:
    """munged on a fresh key, listening on ``munge_socket``."""
    root, run, log = cluster.root, cluster.root / "run", cluster.root / "log"
    # --force: it runs as root in a non-standard place
    key = root / "munge.key"
    subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}", "--force"],
                   check=True, capture_output=True)
    key.chmod(0o600)
    cluster.procs["munged"] = subprocess.Popen(
        [_which("munged"), "--foreground", "--force", f"--key-file={key}",
         f"--socket={munge_socket}", f"--pid-file={run / 'munged.pid'}",
         f"--seed-file={root / 'munge.seed'}", f"--log-file={log / 'munged.log'}",
         "--num-threads=2"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent)


def _start_mariadbd(cluster: Cluster, port: int) -> None:
    """mariadbd on a fresh datadir ``root/db``, TCP on 127.0.0.1:``port`` only."""
    db, run, log = cluster.root / "db", cluster.root / "run", cluster.root / "log"
    res = subprocess.run([_which("mariadb-install-db"), "--no-defaults", f"--datadir={db}",
                          "--user=root", "--auth-root-authentication-method=normal",
                          "--skip-test-db"], capture_output=True, text=True, timeout=120)
    if res.returncode:
        raise RuntimeError(f"mariadb-install-db exited {res.returncode}: "
                           f"{(res.stderr + res.stdout)[-1500:]}")
    with open(log / "mariadbd.log", "a") as f:
        cluster.procs["mariadbd"] = subprocess.Popen(
            [_which("mariadbd"), "--no-defaults", f"--datadir={db}", "--user=root",
             f"--socket={run / 'mysqld.sock'}", f"--pid-file={run / 'mysqld.pid'}",
             f"--port={port}", "--bind-address=127.0.0.1",
             "--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=0"],
            stdout=f, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)


def _write_confs(cluster: Cluster, ports: dict[str, int], munge_socket: Path) -> None:
    """``slurmdbd.conf`` and ``slurm.conf``: one node as ``slurmd -C`` sees this machine,
    one partition, accounting through slurmdbd, every daemon on its own free port."""
    root, run, log = cluster.root, cluster.root / "run", cluster.root / "log"
    host = socket.gethostname().split(".")[0]
    auth = f"AuthType=auth/munge\nAuthInfo=socket={munge_socket}\n"
    _write(root / "slurmdbd.conf", (
        f"{auth}DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={ports['dbd']}\n"
        "SlurmUser=root\nStorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\n"
        f"StoragePort={ports['db']}\nStorageUser=root\nStorageLoc=slurm_acct_db\n"
        f"PidFile={run / 'slurmdbd.pid'}\nLogFile={log / 'slurmdbd.log'}\nDebugLevel=info\n"
    ), mode=0o600)
    hw = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True,
                        check=True).stdout.splitlines()[0].split()
    hw = " ".join(w for w in hw if not w.startswith("NodeName="))
    _write(cluster.conf, (
        f"ClusterName={CLUSTER}\nSlurmctldHost={host}(127.0.0.1)\n{auth}"
        "SlurmUser=root\nSlurmdUser=root\n"
        f"SlurmctldPort={ports['ctld']}\nSlurmdPort={ports['slurmd']}\n"
        f"StateSaveLocation={root / 'state'}\nSlurmdSpoolDir={root / 'spool'}\n"
        f"SlurmctldPidFile={run / 'slurmctld.pid'}\nSlurmdPidFile={run / 'slurmd.pid'}\n"
        f"SlurmctldLogFile={log / 'slurmctld.log'}\nSlurmdLogFile={log / 'slurmd.log'}\n"
        "SlurmctldDebug=info\nSlurmdDebug=info\n"
        "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
        "JobAcctGatherType=jobacct_gather/none\nMpiDefault=none\n"
        "SchedulerType=sched/backfill\nSelectType=select/cons_tres\n"
        "SelectTypeParameters=CR_Core\nReturnToService=2\n"
        # seconds, not minutes: a cancelled job leaves the node quickly
        "KillWait=5\nMinJobAge=5\nSchedulerParameters=sched_interval=2\n"
        "AccountingStorageType=accounting_storage/slurmdbd\n"
        f"AccountingStorageHost=localhost\nAccountingStoragePort={ports['dbd']}\n"
        # the munge socket for talking to slurmdbd (AuthInfo covers only the rest)
        f"AccountingStoragePass={munge_socket}\n"
        f"NodeName={cluster.node} NodeHostname={host} NodeAddr=127.0.0.1 {hw} State=UNKNOWN\n"
        f"PartitionName={PARTITION} Nodes={cluster.node} Default=YES MaxTime=INFINITE "
        "State=UP\n"))


def _start_daemon(cluster: Cluster, name: str, *args: str) -> None:
    """One SLURM daemon in the foreground under ``$SLURM_CONF``; it logs to its own file."""
    cluster.procs[name] = subprocess.Popen(
        [_which(name), *args], env=cluster.env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":  # start one by hand; Ctrl-C stops it
    import signal
    import sys

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill <pid> stops it too
    why = cannot_start()
    if why:
        sys.exit(why)
    t0 = time.time()
    c = start(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/asgan-slurm"))
    print(f"cluster up in {time.time() - t0:.1f} s: export SLURM_CONF={c.conf}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        c.stop()
