"""Several processes, one run (issue 15 §3), on ``jax.distributed``: every process runs the same
host loop over its own devices of one global mesh (:mod:`pgjax.run.devices`); process 0 alone
writes the run folder (config, status, logs, progress, evaluation episodes, summary, report);
every process takes part in the collective orbax checkpoints, so a run resumes on the same or
another process count.

The processes must take the same decisions at the same chunk: the chunk size (process 0's, from
its timing), stopping (any process that received a signal stops them all) and the wall-time
checkpoint (process 0's clock). :func:`agree` gathers each process's numbers once per chunk.

Start-up, before anything touches a device (:func:`initialize`): from ``--coordinator host:port
--num-processes P --process-id i``, from ``PGJAX_COORDINATOR``, ``PGJAX_NUM_PROCESSES`` and
``PGJAX_PROCESS_ID``, or, inside a SLURM job step with more than one task, from SLURM's variables
(jax's own cluster detection). On CPU the collectives run over gloo.
"""

from __future__ import annotations

import os

import numpy as np

from pgjax.config import ConfigError

ENV = {"coordinator": "PGJAX_COORDINATOR", "num_processes": "PGJAX_NUM_PROCESSES",
       "process_id": "PGJAX_PROCESS_ID"}


def settings(coordinator: str | None = None, num_processes: int | None = None,
             process_id: int | None = None, environ=os.environ) -> dict | None:
    """The ``jax.distributed.initialize`` arguments from flags, else environment variables; {}
    for SLURM's auto-detection; None for a single-process run. Bad values are refused here."""
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    for name, var in ENV.items():
        if given[name] is None and environ.get(var):
            given[name] = environ[var]
    if all(value is None for value in given.values()):
        slurm_tasks = environ.get("SLURM_NTASKS") or environ.get("SLURM_STEP_NUM_TASKS")
        return {} if slurm_tasks and slurm_tasks.isdigit() and int(slurm_tasks) > 1 else None
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} is not set: a multi-process run needs --coordinator "
                          "host:port, --num-processes P and --process-id i (or PGJAX_COORDINATOR, "
                          "PGJAX_NUM_PROCESSES, PGJAX_PROCESS_ID)")
    host, _, port = str(given["coordinator"]).rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"coordinator={given['coordinator']!r} is not allowed: host:port, e.g. "
                          "10.0.0.1:1234")
    try:
        count, index = int(given["num_processes"]), int(given["process_id"])
    except ValueError:
        raise ConfigError(f"num_processes={given['num_processes']!r}, process_id={given['process_id']!r} "
                          "are not allowed: integers") from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"num_processes={count}, process_id={index} are not allowed: "
                          "num_processes ≥ 1 and 0 ≤ process_id < num_processes")
    return {"coordinator_address": str(given["coordinator"]), "num_processes": count,
            "process_id": index}


def initialize(**flags) -> bool:
    """Join the processes of a multi-process run (see the module docstring); False when the run
    is single-process. Must run before any JAX computation."""
    arguments = settings(**flags)
    if arguments is None:
        return False
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**arguments)
    return True


def is_primary() -> bool:
    """Whether this process writes the run folder (process 0; always, in a single process)."""
    import jax
    return jax.process_index() == 0


def agree(values) -> np.ndarray:
    """Every process's ``values`` (a 1-D sequence of numbers), stacked ``[processes, k]``."""
    import jax
    local = np.asarray(values, np.float64)
    if jax.process_count() == 1:
        return local[None]
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(local)).reshape(jax.process_count(), -1)


def barrier(name: str) -> None:
    """Wait until every process reaches ``name`` (nothing in a single process)."""
    import jax
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)
