"""Run options: the host-side choices of a run (evaluation, checkpoints, chunks, sinks), none of
which changes the compiled update. Validated before anything is created or compiled."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pgjax.config import ConfigError, require
from pgjax.run.devices import SHARD_AXES
from pgjax.run.loggers import wandb_available

ON_NONFINITE = ("freeze", "stop")
PRUNERS = (None, "halving")


@dataclass(frozen=True)
class RunOptions:
    """Host-side choices; none of them changes the compiled update."""
    eval_episodes: int = 200
    num_evals: int = 10                  # evaluations spread over the run, the last at the end
    eval_every: int | None = None        # env steps per member between evaluations (overrides num_evals)
    greedy_eval: bool = True
    cache_episodes: int = 20             # episodes per member kept step by step in eval/ (0: returns only)
    checkpoint_every: int | None = None  # env steps per member (default: by wall time only)
    checkpoint_minutes: float = 5.0      # a checkpoint after this much wall time (and at the end, and when stopped)
    keep_checkpoints: int = 3
    chunk_seconds: float = 3.0           # wall time a chunk of updates aims at (signals wait ≤ this)
    chunk_updates: int | None = None     # fixed updates per chunk instead (deterministic boundaries)
    on_nonfinite: str = "freeze"         # "freeze" the diverged member, or "stop" the whole run
    tensorboard: bool = True
    log_every_seconds: float = 1.0       # wall time one metrics row covers (its mean); 0: a row per update
    log_members: int = 16                # populations larger than this write member rows (and TensorBoard
                                         # folders) less often / per setting, so logs grow like this many members'
    wandb_project: str | None = None
    plots: bool = True
    devices: int | None = None           # devices the run is split over (None: as many local ones as divide it)
    shard: str = "members"               # what is split over them: the population ("members") or each member's env batch ("envs")
    compile_cache: bool = True           # JAX's persistent compilation cache (pgjax.run.compilation_cache)
    pbt: bool = False                    # population-based training: a round after every evaluation but the last (pgjax.run.pbt_rounds)
    pbt_fraction: float = 0.25           # PBT: the bottom fraction copies a member of the top fraction
    pbt_resample: float = 0.25           # PBT: probability that explore resamples a value instead of perturbing it
    prune: str | None = None             # "halving": successive halving of the settings (pgjax.run.programs)
    prune_eta: int = 3                   # halving: the top 1/η of the settings go on at each rung
    prune_rungs: int | None = None       # halving: rungs (default: until one setting is left)

    def validate(self) -> None:
        for name in ("eval_episodes", "num_evals", "keep_checkpoints", "log_members"):
            value = getattr(self, name)
            require(isinstance(value, int) and value > 0, name, value, "must be a positive integer")
        for name in ("eval_every", "checkpoint_every"):
            value = getattr(self, name)
            require(value is None or (isinstance(value, int) and value > 0), name, value,
                    "must be a positive number of env steps")
        require(self.chunk_updates is None or (isinstance(self.chunk_updates, int)
                                               and self.chunk_updates > 0),
                "chunk_updates", self.chunk_updates, "a positive number of updates, or None")
        require(isinstance(self.cache_episodes, int) and 0 <= self.cache_episodes, "cache_episodes",
                self.cache_episodes, "must be an integer ≥ 0")
        for name in ("checkpoint_minutes", "chunk_seconds"):
            value = getattr(self, name)
            require(isinstance(value, (int, float)) and math.isfinite(value) and value > 0, name,
                    value, "must be a positive number")
        require(isinstance(self.log_every_seconds, (int, float)) and math.isfinite(self.log_every_seconds)
                and self.log_every_seconds >= 0, "log_every_seconds", self.log_every_seconds,
                "must be a number of seconds ≥ 0 (0: a metrics row per update)")
        require(self.devices is None or (isinstance(self.devices, int) and self.devices > 0),
                "devices", self.devices, "a positive number of devices, or None")
        require(self.shard in SHARD_AXES, "shard", self.shard,
                f"one of {list(SHARD_AXES)} (split the population, or each member's env batch)")
        require(isinstance(self.pbt, bool), "pbt", self.pbt, "true or false")
        require(isinstance(self.pbt_fraction, (int, float)) and 0 < self.pbt_fraction <= 0.5,
                "pbt_fraction", self.pbt_fraction, "a fraction in (0, 0.5] (the bottom and the top "
                "quantiles must not overlap)")
        require(isinstance(self.pbt_resample, (int, float)) and 0 <= self.pbt_resample <= 1,
                "pbt_resample", self.pbt_resample, "a probability in [0, 1]")
        require(self.prune in PRUNERS, "prune", self.prune, f"one of {list(PRUNERS)}")
        require(isinstance(self.prune_eta, int) and not isinstance(self.prune_eta, bool)
                and self.prune_eta >= 2, "prune_eta", self.prune_eta, "an integer ≥ 2 (the top "
                "1/η of the settings go on at each rung)")
        require(self.prune_rungs is None or (isinstance(self.prune_rungs, int) and self.prune_rungs >= 2),
                "prune_rungs", self.prune_rungs, "an integer ≥ 2, or None (until one setting is left)")
        require(not (self.pbt and self.prune), "prune", self.prune,
                "None with pbt=True (PBT keeps the population; halving shrinks it: choose one)")
        require(self.on_nonfinite in ON_NONFINITE, "on_nonfinite", self.on_nonfinite,
                f"one of {list(ON_NONFINITE)}")
        if self.wandb_project is not None and not wandb_available():
            raise ConfigError(f"wandb={self.wandb_project!r} is not allowed: Weights & Biases is not "
                              "installed (pip install 'pgjax[wandb]')")
