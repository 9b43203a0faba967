"""Reports on finished (or running) runs: load (``load``), summarise over seeds (``stats``), plot
(``figures``), tabulate (``markdown``).

Host side only (NumPy + matplotlib; no JAX: config.json and study.json are read by
:mod:`pgjax.run.saved`). Reads the files the runner writes in ``runs/<name>/``:

    config.json     algorithm, config, hparams, seeds, members, device, steps_per_update
    metrics.jsonl   one line per member per logged row (a row covers ``--log-every-seconds`` of
                    updates, their mean; ``null`` for non-finite numbers)
    eval.jsonl      one line per evaluation and per member (optional)
    summary.json    final evaluation per member, steps/s, compile time (absent while running)

A member is one seed of one hyperparameter setting (rows carry ``member`` and the swept
``hp_*`` values; rows without ``member`` have one member per seed). Statistics are over the seeds of each
setting, and a run that swept several settings reports one line per setting.

Statistics follow Agarwal et al. (2021), "Deep RL at the edge of the statistical precipice": the
interquartile mean (IQM) and percentile-bootstrap 95% confidence intervals over seeds.

A sweep's settings are ranked by final evaluation return and by the normalised area under the
evaluation curve, each compared with the best by a paired bootstrap over the shared seeds
(``sweep``); ``best_config`` writes the best one as a settings file for ``pgjax train --config``.

Writes ``runs/<name>/plots/<metric>.png`` (one run, mean over seeds with a 95% bootstrap band; a
sweep: its top settings, and ``sensitivity_<key>.png``) and, for :func:`report`,
``OUT/<metric>.png`` (runs overlaid, one panel per environment) and ``OUT/report.md``.
"""

from pgjax.report.best_config import best_record, to_toml, write_best_config
from pgjax.report.figures import curves, plot_run, plot_sensitivity, sensitivity_lines
from pgjax.report.load import RunData, Setting, align_rows, load_run, report_entries, run_labels, settings
from pgjax.report.markdown import ranking_markdown, ranking_table, report, report_table
from pgjax.report.stats import (BOOTSTRAP_SEED, NUM_RESAMPLES, FinalEval, PairedDifference,
                                bootstrap_ci, curve_band, final_eval, final_returns, forward_fill,
                                iqm, iqm_weights, moving_average, normalised_auc, paired_difference)
from pgjax.report.sweep import (Comparison, Estimate, SettingScore, axis_scales, rank,
                                score_settings, spacing_of, swept_keys, top_settings)

__all__ = ["BOOTSTRAP_SEED", "NUM_RESAMPLES", "Comparison", "Estimate", "FinalEval",
           "PairedDifference", "RunData", "Setting", "SettingScore", "align_rows", "axis_scales",
           "best_record", "bootstrap_ci", "curve_band", "curves", "final_eval", "final_returns",
           "forward_fill", "iqm", "iqm_weights", "load_run", "moving_average", "normalised_auc",
           "paired_difference", "plot_run", "plot_sensitivity", "rank", "ranking_markdown",
           "ranking_table", "report", "report_entries", "report_table", "run_labels",
           "score_settings", "sensitivity_lines", "settings", "spacing_of", "swept_keys", "to_toml",
           "top_settings", "write_best_config"]
