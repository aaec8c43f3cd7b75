"""Multi-process start-up on jax.distributed, and a torchrun-like local launcher.

``python -m jaxvision.launch --nproc N script.py ARGS`` starts ``N`` copies of
``script.py`` on this machine, each told its process id and a coordinator address
(127.0.0.1, a free port) through environment variables. The script calls
:func:`initialize` once at start; it then sees the devices of every process, and
``make_mesh()`` spans them all. Like torchrun, the launcher watches its children: if one
exits with an error or is killed, it stops the others (SIGTERM, then SIGKILL after a grace
period), says which process failed, and exits non-zero.

Across hosts, run the launcher on every host with the same ``--coordinator HOST:PORT``
(an address of host 0 the others can reach), ``--nnodes`` and each host's
``--node-rank``; process ids are ``node_rank * nproc + local_rank``. On TPU pods, under
SLURM (``srun``, one task per host or per device) and on other clusters JAX discovers the
processes itself: start the script directly there and :func:`initialize` calls
``jax.distributed.initialize()`` with no arguments.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

import jax

from jaxvision._src.export import export

ENV_COORDINATOR = "JAXVISION_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAXVISION_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXVISION_PROCESS_ID"
ENV_LOCAL_DEVICES = "JAXVISION_LOCAL_DEVICE_COUNT"


def _cluster_detected() -> bool:
    """Whether JAX's own cluster detection should find several processes."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:
        return True
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return "," in hosts or int(os.environ.get("MEGASCALE_NUM_SLICES", "1")) > 1


@export("parallel.initialize")
def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_count: int | None = None,
    initialization_timeout_s: int = 120,
    heartbeat_timeout_s: int = 30,
) -> None:
    """Joins this process to a multi-process JAX run; a no-op in a single plain process.

    Call it once, first thing in a script, before any other JAX call. Arguments left
    ``None`` are read from the environment that ``python -m jaxvision.launch`` sets;
    without them, under SLURM or on a multi-host TPU slice JAX's own cluster detection is
    used, and otherwise nothing happens (one process, its local devices).

    Args:
      coordinator_address: ``"host:port"`` of process 0's coordinator service.
      num_processes: total number of processes.
      process_id: this process's id in ``[0, num_processes)``.
      local_device_count: on CPU, how many devices this process simulates
        (``jax_num_cpu_devices``); ignored on accelerators.
      initialization_timeout_s: how long to wait for every process to join.
      heartbeat_timeout_s: after how long without a heartbeat a process is declared dead,
        which makes the others fail instead of waiting for it.
    """
    if jax.distributed.is_initialized():
        return
    env = os.environ
    coordinator_address = coordinator_address or env.get(ENV_COORDINATOR)
    if num_processes is None and ENV_NUM_PROCESSES in env:
        num_processes = int(env[ENV_NUM_PROCESSES])
    if process_id is None and ENV_PROCESS_ID in env:
        process_id = int(env[ENV_PROCESS_ID])
    if local_device_count is None and ENV_LOCAL_DEVICES in env:
        local_device_count = int(env[ENV_LOCAL_DEVICES])
    if local_device_count is not None:
        if local_device_count < 1:
            raise ValueError(f"local_device_count must be positive, got {local_device_count}")
        jax.config.update("jax_num_cpu_devices", local_device_count)
    if coordinator_address is None:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise ValueError(
                "coordinator_address is required with num_processes / process_id "
                f"(got {num_processes!r} / {process_id!r})"
            )
        if _cluster_detected():
            jax.distributed.initialize(
                initialization_timeout=initialization_timeout_s,
                heartbeat_timeout_seconds=heartbeat_timeout_s,
            )
        return
    if num_processes is None or process_id is None:
        raise ValueError("num_processes and process_id are required with coordinator_address")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id {process_id} is not in [0, {num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address,
        num_processes,
        process_id,
        initialization_timeout=initialization_timeout_s,
        heartbeat_timeout_seconds=heartbeat_timeout_s,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _describe(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with code {rc}"


def _stop(procs: dict[int, subprocess.Popen], grace_s: float) -> None:
    """SIGTERM to each live child's process group, SIGKILL after ``grace_s``."""
    for p in procs.values():
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    for p in procs.values():
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jaxvision.launch",
        description="Start N local processes of a script joined through jax.distributed.",
    )
    parser.add_argument("--nproc", type=int, required=True, help="processes on this host")
    parser.add_argument(
        "--local-devices",
        type=int,
        default=None,
        help="CPU devices each process simulates (jax_num_cpu_devices); default: JAX's",
    )
    parser.add_argument("--nnodes", type=int, default=1, help="number of hosts")
    parser.add_argument("--node-rank", type=int, default=0, help="this host's index")
    parser.add_argument(
        "--coordinator",
        default=None,
        help="HOST:PORT of process 0; default 127.0.0.1 and a free port (one host only)",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="stop everything after this many seconds"
    )
    parser.add_argument(
        "--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL"
    )
    parser.add_argument("script", help="the Python script to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the script")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the launcher; returns the exit code (0 when every process exited with 0)."""
    args = _parser().parse_args(argv)
    if args.nproc < 1 or args.nnodes < 1 or not 0 <= args.node_rank < args.nnodes:
        raise SystemExit("launch: need --nproc >= 1, --nnodes >= 1, 0 <= --node-rank < --nnodes")
    if args.nnodes > 1 and args.coordinator is None:
        raise SystemExit("launch: --coordinator HOST:PORT is required with --nnodes > 1")
    coordinator = args.coordinator or f"127.0.0.1:{_free_port()}"
    total = args.nproc * args.nnodes
    procs: dict[int, subprocess.Popen] = {}
    for local_rank in range(args.nproc):
        pid = args.node_rank * args.nproc + local_rank
        env = dict(os.environ)
        env.update(
            {
                ENV_COORDINATOR: coordinator,
                ENV_NUM_PROCESSES: str(total),
                ENV_PROCESS_ID: str(pid),
            }
        )
        if args.local_devices is not None:
            env[ENV_LOCAL_DEVICES] = str(args.local_devices)
        procs[pid] = subprocess.Popen(
            [sys.executable, args.script, *args.args], env=env, start_new_session=True
        )

    def on_signal(signum: int, _frame: object) -> None:
        _stop(procs, args.grace)
        sys.exit(128 + signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    start = time.monotonic()
    try:
        while True:
            codes = {pid: p.poll() for pid, p in procs.items()}
            failed = [(pid, rc) for pid, rc in codes.items() if rc not in (None, 0)]
            if failed:
                pid, rc = failed[0]
                live = sum(rc is None for rc in codes.values())
                print(
                    f"jaxvision.launch: process {pid} (pid {procs[pid].pid}) {_describe(rc)}; "
                    f"stopping the {live} other running processes",
                    file=sys.stderr,
                    flush=True,
                )
                _stop(procs, args.grace)
                return rc if rc > 0 else 128 - rc
            if all(rc == 0 for rc in codes.values()):
                return 0
            if args.timeout is not None and time.monotonic() - start > args.timeout:
                print(
                    f"jaxvision.launch: timed out after {args.timeout:g} s; stopping all",
                    file=sys.stderr,
                    flush=True,
                )
                _stop(procs, args.grace)
                return 124
            time.sleep(0.1)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
