"""The sinks one run writes to (:mod:`pgjax.run.loggers`), chosen from its options: the JSONL
files and the progress line always, per-setting statistics for a population, TensorBoard and
W&B when asked, then the user's callbacks. Process 0 alone writes a multi-process run's logs."""

from __future__ import annotations

from pathlib import Path

from pgjax.run import thinning
from pgjax.run.loggers import (EvalFile, FanOut, MetricsFile, ProgressDisplay, SettingsFile,
                               TensorBoard, Wandb)


def open_sinks(spec, population, run_dir: Path, out, config_record: dict, *, done_steps: int,
               resume: bool, primary: bool, callbacks=()) -> FanOut:
    """Every sink of the run in ``run_dir``, fanned out; a resumed run's TensorBoard files drop
    the events after ``done_steps`` (its checkpoint)."""
    if not primary:
        return FanOut([])
    options, groups = spec.options, population.groups()
    sinks = [MetricsFile(run_dir / "metrics.jsonl",
                         stride=thinning.member_stride(population.size, options.log_members)),
             EvalFile(run_dir / "eval.jsonl"), ProgressDisplay(out)]
    if population.size > 1:
        sinks.append(SettingsFile(run_dir / "metrics_settings.jsonl", groups,
                                  population.setting_labels()))
    # a program of a static sweep (pgjax.run.programs) adds its static values to each setting's
    static = (spec.study or {}).get("static") or {}
    values = [{**static, **v} for v in population.setting_values()]
    if options.tensorboard:
        sinks.append(TensorBoard(run_dir / "tb", [label["seed"] for label in population.labels()],
                                 purge_step=done_steps + 1 if resume else None,
                                 groups=groups, max_writers=options.log_members,
                                 setting_names=population.setting_names(), setting_values=values))
    if options.wandb_project:
        study_name = run_dir.parent.parent.name if static else run_dir.name
        names = [f"{run_dir.name},{n}" if static else n for n in population.setting_names()]
        sinks.append(Wandb(options.wandb_project, study_name, config_record, run_dir,
                           groups, names, values, program=run_dir.name if static else None))
    return FanOut(sinks + list(callbacks))
