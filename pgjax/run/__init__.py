"""The host side: everything that does I/O around the jitted training program.

    spec.py                       a run resolved once (RunSpec): from the command line or a folder
    saved.py                      config.json and study.json read back, standard library alone
    spec_file.py, field_docs.py   run settings from files; what each setting means (for --help)
    options.py, population.py     run options (host-side choices); seeds × settings
    folder.py                     a run folder's life cycle: lock, status, fresh start or resume
    chunks.py                     the one compiled training program and how chunks are sized
    runner.py                     the chunk loop: train, log, evaluate, checkpoint, stop
    schedule.py                   when evaluations and checkpoints are due
    divergence.py                 which members went non-finite, where, and on what
    background.py                 background threads; SIGINT/SIGTERM as a flag the loop checks
    loggers.py                    sinks behind one interface: JSONL, TensorBoard, W&B, progress
    records.py, thinning.py       what the sinks receive (a chunk's rows, progress); rows thinned
                                  to ~1 s means and per-setting statistics
    run_sinks.py                  the sinks one run writes to, chosen from its options
    checkpoints.py                orbax checkpoints of the whole population
    evaluation.py, episodes.py    the evaluation routine (and its program) and its episode cache
    summary.py                    the end of a run: result, summary.json, summary table
    compilation_cache.py          JAX's persistent compilation cache for runs
    executables.py                the program store: traced programs kept between processes
    devices.py, distributed.py    the mesh of local devices; several processes (jax.distributed)
    memory.py                     the memory estimate and XLA's account, checked before running
    pbt_rounds.py                 population-based training's rounds inside a run
    programs.py                   studies of several programs: static sweeps, halving's rungs

Nothing here is imported by the math layer or the algorithms; ``pgjax.cli`` parses arguments and
calls into this package.
"""
