"""Reports on finished (or running) runs: load (``load``), summarise over seeds (``stats``), plot
(``figures``), tabulate (``markdown``).

Host side only (NumPy + matplotlib; no JAX). Reads the files the runner writes in ``runs/<name>/``:

    config.json     algorithm, config, hparams, seeds, members, device, steps_per_update
    metrics.jsonl   one line per update and per member (``null`` for non-finite numbers)
    eval.jsonl      one line per evaluation and per member (optional)
    summary.json    final evaluation per member, steps/s, compile time (absent while running)

A member is one seed of one hyperparameter setting (rows carry ``member`` and the swept
``hp_*`` values; older runs have one member per seed). Statistics are over the seeds of each
setting, and a run that swept several settings reports one line per setting.

Statistics follow Agarwal et al. (2021), "Deep RL at the edge of the statistical precipice": the
interquartile mean (IQM) and percentile-bootstrap 95% confidence intervals over seeds.

Writes ``runs/<name>/plots/<metric>.png`` (one run, mean over seeds with a 95% bootstrap band) and,
for :func:`report`, ``OUT/<metric>.png`` (runs overlaid) and ``OUT/report.md``.
"""

from pgjax.report.figures import curves, plot_run
from pgjax.report.load import RunData, Setting, align_rows, load_run, report_entries, run_labels, settings
from pgjax.report.markdown import report, report_table
from pgjax.report.stats import (BOOTSTRAP_SEED, NUM_RESAMPLES, FinalEval, bootstrap_ci, curve_band,
                                final_eval, forward_fill, iqm, iqm_weights, moving_average)

__all__ = ["BOOTSTRAP_SEED", "NUM_RESAMPLES", "FinalEval", "RunData", "Setting", "align_rows",
           "bootstrap_ci", "curve_band", "curves", "final_eval", "forward_fill", "iqm", "iqm_weights",
           "load_run", "moving_average", "plot_run", "report", "report_entries", "report_table",
           "run_labels", "settings"]
