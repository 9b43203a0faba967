"""Several processes, one run, on ``jax.distributed``: every process runs the same
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

**SLURM.** ``sbatch`` (and ``salloc``) run the batch script as *one* process on the first node
of the allocation, with the allocation's ``SLURM_NTASKS``; ``srun`` starts the tasks of a *job
step*, each with the step's variables as well: ``SLURM_STEP_NODELIST``, ``SLURM_STEP_NUM_TASKS``
and its own ``SLURM_PROCID``. So a run is multi-process only inside a job step of several tasks
(the variables jax's detection reads are all set); ``SLURM_NTASKS`` > 1 without a step means
``pgjax train`` was started from the batch script itself, which is one process: it runs as one,
with a one-line warning that ``srun`` starts the processes of a multi-process run.

**Joining.** Each process says on stderr which coordinator it waits for, and gives up after
``PGJAX_COORDINATOR_TIMEOUT`` seconds (default :data:`DEFAULT_TIMEOUT`) with one line naming the
address, instead of waiting forever for a process 0 that never started (or for processes that
never join). The wait is ours, not jax's: jax's own ``initialization_timeout`` aborts the
process from C++ with a stack trace, so it is set past ours as a backstop.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import warnings

import numpy as np

from pgjax.config import ConfigError

ENV = {"coordinator": "PGJAX_COORDINATOR", "num_processes": "PGJAX_NUM_PROCESSES",
       "process_id": "PGJAX_PROCESS_ID"}
TIMEOUT_ENV, DEFAULT_TIMEOUT = "PGJAX_COORDINATOR_TIMEOUT", 120.0
# what jax's SLURM detection reads (jax._src.clusters.slurm_cluster): all set only inside a job step
SLURM_STEP_VARIABLES = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
                        "SLURM_LOCALID")


def settings(coordinator: str | None = None, num_processes: int | None = None,
             process_id: int | None = None, environ=os.environ) -> dict | None:
    """The ``jax.distributed.initialize`` arguments from flags, else environment variables; {}
    for SLURM's auto-detection; None for a single-process run. Bad values are refused here."""
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    for name, var in ENV.items():
        if given[name] is None and environ.get(var):
            given[name] = environ[var]
    if all(value is None for value in given.values()):
        return _slurm(environ)
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


def _slurm(environ) -> dict | None:
    """{} (jax detects the processes) inside a SLURM job step of several tasks; None otherwise,
    with a warning when the allocation has several tasks but this is not a job step (the module
    docstring has the rule)."""
    tasks = environ.get("SLURM_STEP_NUM_TASKS") or environ.get("SLURM_NTASKS") or ""
    if not tasks.isdigit() or int(tasks) < 2:
        return None
    if all(environ.get(name) for name in SLURM_STEP_VARIABLES):
        return {}
    missing = [name for name in SLURM_STEP_VARIABLES if not environ.get(name)]
    warnings.warn(f"SLURM_NTASKS={tasks} but this is not a SLURM job step ({', '.join(missing)} "
                  "unset: started from the batch script, not by srun): running as one process; "
                  "start a multi-process run with srun", stacklevel=3)
    return None


def coordinator_timeout(environ=os.environ) -> float:
    """Seconds a process waits to join the others: ``PGJAX_COORDINATOR_TIMEOUT`` or
    :data:`DEFAULT_TIMEOUT`."""
    text = environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{TIMEOUT_ENV}={text!r} is not allowed: a positive number of seconds "
                          f"(default {DEFAULT_TIMEOUT:g})")
    return seconds


def listening(address: str, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def waiting_line(arguments: dict, timeout: float) -> str:
    """What a process says while it waits to join the others."""
    if not arguments:
        who, where = "this SLURM task", "the coordinator SLURM's variables name"
    else:
        who = f"process {arguments['process_id']} of {arguments['num_processes']}"
        where = f"the coordinator at {arguments['coordinator_address']}"
    return (f"pgjax: {who}: waiting for {where} and the other processes (gives up after "
            f"{timeout:g} s; {TIMEOUT_ENV} changes it)")


def gave_up_line(arguments: dict, timeout: float, reachable: bool | None) -> str:
    """The one line of a process that waited ``timeout`` seconds and did not join the run."""
    address = arguments.get("coordinator_address", "named by SLURM's variables")
    if not arguments:
        why = "the processes of this SLURM job step did not all join"
    elif arguments["process_id"] == 0:
        why = (f"process 0 serves it, but not all {arguments['num_processes']} processes joined "
               "(start the others with the same --coordinator and --num-processes)")
    elif reachable is False:
        why = "nothing listens there (start process 0 first, and check the host and port)"
    else:
        why = (f"it answers, but not all {arguments['num_processes']} processes joined (start "
               "the others with the same --coordinator and --num-processes)")
    return (f"pgjax: error: coordinator {address} did not let this process join within "
            f"{timeout:g} s: {why}; {TIMEOUT_ENV} sets how long to wait")


def initialize(*, environ=os.environ, err=None, **flags) -> bool:
    """Join the processes of a multi-process run (see the module docstring); False when the run
    is single-process. Must run before any JAX computation. A process that has not joined after
    :func:`coordinator_timeout` seconds prints :func:`gave_up_line` and exits with status 2 (a
    thread ends it: jax's wait cannot be interrupted)."""
    arguments = settings(**flags, environ=environ)
    if arguments is None:
        return False
    timeout = coordinator_timeout(environ)
    err = err or sys.stderr
    print(waiting_line(arguments, timeout), file=err, flush=True)

    def give_up():
        address = arguments.get("coordinator_address")
        print(gave_up_line(arguments, timeout, listening(address) if address else None),
              file=err, flush=True)
        sys.stdout.flush()
        os._exit(2)

    watchdog = threading.Timer(timeout, give_up)
    watchdog.daemon = True
    watchdog.name = "pgjax-join-watchdog"
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    watchdog.start()
    try:  # jax's own limit (it aborts the process) comes after ours
        jax.distributed.initialize(**arguments, initialization_timeout=int(timeout) + 60)
    finally:
        watchdog.cancel()
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
