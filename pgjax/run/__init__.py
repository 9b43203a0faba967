"""The host side: everything that does I/O around the jitted training program.

    spec_file.py, field_docs.py   run settings from files; what each setting means (for --help)
    folder.py                     a run folder's life cycle: lock, status, fresh start or resume
    chunks.py                     the one compiled training program and how chunks are sized
    runner.py                     the chunk loop: train, log, evaluate, checkpoint, stop
    loggers.py                    JSONL, TensorBoard and W&B writers
    checkpoints.py                orbax checkpoints of the whole population
    evaluation.py, episodes.py    the evaluation routine and its cache of episodes
    compilation_cache.py          JAX's persistent compilation cache for runs

Nothing here is imported by the math layer or the algorithms; ``pgjax.cli`` parses arguments and
calls into this package.
"""
