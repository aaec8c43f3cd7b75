"""Process 1 dies after the first collective; process 0 then waits in the second one."""

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvision import parallel

if __name__ == "__main__":
    parallel.initialize()
    mesh = parallel.make_mesh()
    total = jax.jit(lambda x: jnp.sum(x), out_shardings=NamedSharding(mesh, P()))
    x = parallel.shard_batch(np.ones(jax.local_device_count(), np.float32), mesh)
    print(f"process {jax.process_index()}: first sum {float(total(x))}", flush=True)
    if jax.process_index() == 1:
        os._exit(3)
    print(f"process {jax.process_index()}: second sum {float(total(x))}", flush=True)
