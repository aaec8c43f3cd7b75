"""Multi-process start-up on jax.distributed, and a torchrun-like local launcher.

``python -m jaxvision.launch --nproc N script.py ARGS`` starts ``N`` copies of
``script.py`` on this machine, each told its process id and a coordinator address
(127.0.0.1, a free port) through environment variables. The script calls
:func:`initialize` once at start; it then sees the devices of every process, and
``make_mesh()`` spans them all. Like torchrun, the launcher watches its children: if one
exits with an error or is killed, it stops the others (SIGTERM, then SIGKILL after a grace
period), says which process failed first, and exits non-zero.

A failing process must exit at once: at exit JAX's client waits in a shutdown barrier for
its peers, which wait for it in a collective, so a plain ``raise`` or ``sys.exit(3)``
would hang the run for minutes. The launcher therefore runs each script through
:func:`_run_worker`, which ends a process that raises or exits non-zero with
``os._exit`` (after printing the traceback and flushing), and :func:`initialize` installs
the same rule for uncaught exceptions in scripts started without the launcher. A clean
exit (code 0) still goes through the barrier, so that process 0, which hosts the
coordinator, outlives its peers. The workers die with the launcher, also when it is
killed with SIGKILL (``PR_SET_PDEATHSIG`` on Linux, a parent watchdog elsewhere).

Across hosts, run the launcher on every host with the same ``--coordinator HOST:PORT``
(an address of host 0 the others can reach), ``--nnodes`` and each host's
``--node-rank``; process ids are ``node_rank * nproc + local_rank``. On TPU pods, under
SLURM (``srun``, one task per host or per device) and on other clusters JAX discovers the
processes itself: start the script directly there and :func:`initialize` calls
``jax.distributed.initialize()`` with no arguments.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import queue
import random
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence

import jax

from jaxvision._src.export import export

ENV_COORDINATOR = "JAXVISION_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAXVISION_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXVISION_PROCESS_ID"
ENV_LOCAL_DEVICES = "JAXVISION_LOCAL_DEVICE_COUNT"
ENV_LAUNCHER_PID = "JAXVISION_LAUNCHER_PID"


def _cluster_detected() -> bool:
    """Whether JAX's own cluster detection should find several processes."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:
        return True
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return "," in hosts or int(os.environ.get("MEGASCALE_NUM_SLICES", "1")) > 1


def _exit_now(code: int) -> None:
    """Ends this process without JAX's shutdown barrier, after flushing its output."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not keep us alive
            pass
    os._exit(code)


def _fail_fast_hook(kind: type, value: BaseException, tb: object) -> None:
    """``sys.excepthook`` of a joined process: the traceback, then exit code 1 at once."""
    traceback.print_exception(kind, value, tb)
    _exit_now(1)


def _check_port_free(coordinator_address: str) -> None:
    """Raises a clear error if process 0 cannot bind the coordinator's port."""
    port_text = coordinator_address.rsplit(":", 1)[-1]
    if not port_text.isdigit():
        raise ValueError(f"coordinator_address must be 'host:port', got {coordinator_address!r}")
    port = int(port_text)
    family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            raise RuntimeError(
                f"coordinator {coordinator_address}: port {port} is in use on this host "
                "(another run or service holds it); pick another port for --coordinator / "
                "coordinator_address, or let the launcher choose a free one"
            ) from None


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

    Once joined, an uncaught exception prints its traceback and ends the process at once
    with exit code 1 (``sys.excepthook``), instead of hanging in JAX's shutdown barrier
    while its peers wait for it; under the launcher ``sys.exit(n)`` with ``n != 0`` does
    the same (see the module docs).

    Raises:
      RuntimeError: in process 0, the coordinator's port is already in use.
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
            sys.excepthook = _fail_fast_hook
            jax.distributed.initialize(
                initialization_timeout=initialization_timeout_s,
                heartbeat_timeout_seconds=heartbeat_timeout_s,
            )
        return
    if num_processes is None or process_id is None:
        raise ValueError("num_processes and process_id are required with coordinator_address")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id {process_id} is not in [0, {num_processes})")
    if process_id == 0:
        _check_port_free(coordinator_address)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    sys.excepthook = _fail_fast_hook
    jax.distributed.initialize(
        coordinator_address,
        num_processes,
        process_id,
        initialization_timeout=initialization_timeout_s,
        heartbeat_timeout_seconds=heartbeat_timeout_s,
    )


def _die_with_launcher() -> None:
    """Makes this worker die when the launcher does, even by SIGKILL."""
    launcher = int(os.environ.get(ENV_LAUNCHER_PID, "0"))
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    elif launcher:

        def watch() -> None:
            while os.getppid() == launcher:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if launcher and os.getppid() != launcher:  # it died before the line above
        os._exit(1)


def _run_worker() -> None:
    """Runs ``sys.argv[1]`` as ``__main__``; a failure ends the process at once.

    An uncaught exception prints its traceback and exits with code 1, ``sys.exit(n)`` with
    ``n != 0`` exits with ``n`` (a string message is printed, code 1), both through
    ``os._exit`` so that JAX's shutdown barrier cannot hang the run. A normal end returns.
    """
    _die_with_launcher()
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        if e.code is None or e.code == 0:
            return
        if not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
        _exit_now(e.code if isinstance(e.code, int) else 1)
    except BaseException:  # noqa: BLE001 - KeyboardInterrupt included
        traceback.print_exc()
        _exit_now(1)


def _free_port() -> int:
    """A port free now, below Linux's ephemeral range (32768-60999).

    A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, where any
    process's outgoing connections (another job's gRPC clients, say) may take it between
    this check and the coordinator's bind; a random port below that range is only taken by
    another listener choosing the same one.
    """
    rng = random.Random()  # os-seeded: concurrent launchers draw different ports
    for _ in range(64):
        port = rng.randrange(20000, 32768)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
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
        env[ENV_LAUNCHER_PID] = str(os.getpid())
        worker = "from jaxvision._src.parallel.launch import _run_worker; _run_worker()"
        procs[pid] = subprocess.Popen(
            [sys.executable, "-c", worker, args.script, *args.args],
            env=env,
            start_new_session=True,
        )
    exits: queue.Queue = queue.Queue()  # (process id, exit code), in the order they end
    for pid, p in procs.items():
        threading.Thread(
            target=lambda pid=pid, p=p: exits.put((pid, p.wait())), daemon=True
        ).start()

    def on_signal(signum: int, _frame: object) -> None:
        _stop(procs, args.grace)
        sys.exit(128 + signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    done = 0
    try:
        while done < len(procs):
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                pid, rc = exits.get(timeout=wait)
            except queue.Empty:
                print(
                    f"jaxvision.launch: timed out after {args.timeout:g} s; stopping all",
                    file=sys.stderr,
                    flush=True,
                )
                _stop(procs, args.grace)
                return 124
            done += 1
            if rc != 0:
                live = sum(p.poll() is None for p in procs.values())
                print(
                    f"jaxvision.launch: process {pid} (pid {procs[pid].pid}) {_describe(rc)} "
                    f"(the first to fail); stopping the {live} other running processes",
                    file=sys.stderr,
                    flush=True,
                )
                _stop(procs, args.grace)
                return rc if rc > 0 else 128 - rc
        return 0
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
