"""``python -m jaxvision.launch --nproc N script.py ARGS``: N local processes on jax.distributed.

See ``jaxvision._src.parallel.launch`` and ``docs/parallel.md``.
"""

import sys

from jaxvision._src.parallel.launch import main

if __name__ == "__main__":
    sys.exit(main())
