"""Process 1 fails after the first collective (how: argv[1]); process 0 then waits in the
second one, which never completes.

Modes: ``os_exit`` (``os._exit(3)``), ``sys_exit`` (``sys.exit(3)``), ``raise`` (an
uncaught ``RuntimeError``), ``sigkill`` (process 1 kills itself), ``wait`` (no failure:
both processes print their pid and sleep, for the test that kills the launcher).
"""

import os
import signal
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvision import parallel

if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "os_exit"
    parallel.initialize()
    me = jax.process_index()
    if mode == "wait":
        sys.stdout.write(f"process {me}: pid {os.getpid()}\n")  # one write: one line
        sys.stdout.flush()
        time.sleep(120)
        sys.exit(0)
    mesh = parallel.make_mesh()
    total = jax.jit(lambda x: jnp.sum(x), out_shardings=NamedSharding(mesh, P()))
    x = parallel.shard_batch(np.ones(jax.local_device_count(), np.float32), mesh)
    print(f"process {me}: first sum {float(total(x))}", flush=True)
    if me == 1:
        if mode == "os_exit":
            os._exit(3)
        if mode == "sys_exit":
            sys.exit(3)
        if mode == "raise":
            raise RuntimeError("process 1 fails on purpose")
        if mode == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
    print(f"process {me}: second sum {float(total(x))}", flush=True)
