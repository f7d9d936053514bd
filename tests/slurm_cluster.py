"""A real one-node Slurm cluster for the tests: munged, slurmctld and slurmd on this machine.

:class:`SlurmCluster` writes a minimal ``slurm.conf`` into a temporary directory (state, spool,
logs, pid files and the munge socket and key there too), starts the three daemons in the
foreground as child processes, and waits until ``sinfo`` reports the node idle. Clients find
it through ``SLURM_CONF``, which :meth:`SlurmCluster.env` sets. :meth:`SlurmCluster.stop`
cancels every job, shuts the daemons down and removes nothing it did not create.

What it needs is what ``make install`` installs (``slurm-wlm``, ``munge``) and root, as slurmd
must run its jobs' processes: ``proctrack/linuxproc`` and ``task/none`` (no cgroups, no
systemd), ``select/cons_tres`` with ``CR_Core``, no accounting (so no ``sacct``), munge auth
with a key made for this cluster. The node's line comes from ``slurmd -C``. Nothing is
installed at test time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "scancel", "sinfo", "squeue")


def missing() -> list[str]:
    """What this machine lacks to run the cluster (empty: it can)."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return [f"Slurm/munge binaries {', '.join(absent)} (packages slurm-wlm, munge)"]
    if os.geteuid() != 0:
        return ["root (slurmd runs the test jobs as their user; the test cluster's daemons need root)"]
    return []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlurmCluster:
    """A one-node Slurm under ``root`` (a directory): start, use through :meth:`env`, stop."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.start_seconds = 0.0
        self.stop_seconds = 0.0

    def env(self) -> dict[str, str]:
        """The environment of a Slurm client of this cluster (``SLURM_CONF``)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        r = self.root
        for d in ("state", "spool", "log", "munge"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "munge").chmod(0o700)
        r.chmod(0o755)  # munged wants every directory above its socket searchable by all
        (r / "run").mkdir(exist_ok=True)
        (r / "run").chmod(0o755)
        node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
        host = node.split()[0].split("=", 1)[1]
        self.conf.write_text(f"""\
# A one-node test cluster (tests/slurm_cluster.py); every path is under {r}
ClusterName=speechunits-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/run/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
KillWait=10
{node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")  # noqa: SIM115 - the daemon keeps it open
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                                            start_new_session=True)

    def start(self, timeout: float = 30.0) -> None:
        """Start munged, slurmctld and slurmd; return when the node is idle (else RuntimeError with the logs)."""
        t0 = time.perf_counter()
        self._write_config()
        r = self.root
        subprocess.run(["mungekey", "--create", f"--keyfile={r}/munge/munge.key"], check=True, capture_output=True)
        self._spawn("munged", ["munged", "-F", f"--socket={r}/run/munge.socket", f"--key-file={r}/munge/munge.key",
                               f"--log-file={r}/munge/munged.log", f"--pid-file={r}/munge/munged.pid",
                               f"--seed-file={r}/munge/seed"])
        self._wait(lambda: (r / "run" / "munge.socket").exists(), timeout, "munged to create its socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._spawn("slurmd", ["slurmd", "-D"])
        self._wait(lambda: self._node_state() == "idle", timeout, "the node to be idle")
        self.start_seconds = time.perf_counter() - t0

    def _node_state(self) -> str:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=self.env(), check=False)
        return proc.stdout.strip()

    def _wait(self, ready: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():  # type: ignore[operator]
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"test Slurm cluster: gave up waiting for {what} "
                                   f"({'exited: ' + ', '.join(dead) if dead else f'{timeout:.0f} s'}); logs:\n{self.logs()}")
            time.sleep(0.2)

    def logs(self, lines: int = 15) -> str:
        """The tails of the daemons' logs (for failure messages)."""
        out = []
        for path in sorted((self.root / "log").glob("*")) + [self.root / "munge" / "munged.log"]:
            if path.is_file():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path}\n" + "\n".join(tail))
        return "\n".join(out)

    def stop(self) -> None:
        """Cancel every job, shut the daemons down (SIGKILL after 15 s), wait for them."""
        t0 = time.perf_counter()
        env = self.env()
        if self.procs.get("slurmctld") is not None and self.procs["slurmctld"].poll() is None:
            subprocess.run(["scancel", "--user", str(os.getuid())], env=env, capture_output=True, check=False)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and subprocess.run(
                    ["squeue", "-h"], env=env, capture_output=True, text=True, check=False).stdout.strip():
                time.sleep(0.2)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.stop_seconds = time.perf_counter() - t0
