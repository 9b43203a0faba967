"""The population of a run: hyperparameter settings × seeds, one vmapped program."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from pgjax.config import hparams_to_dict


@dataclass(frozen=True)
class Population:
    """Members = hyperparameter settings × seeds, in that order (setting-major)."""
    seeds: tuple[int, ...]
    settings: tuple  # Hparams, one per setting

    @property
    def size(self) -> int:
        return len(self.seeds) * len(self.settings)

    def labels(self) -> list[dict]:
        swept = _swept_fields(self.settings)
        return [{"seed": seed, "member": i, **{f"hp_{k}": hparams_to_dict(hp)[k] for k in swept}}
                for i, (hp, seed) in enumerate((hp, s) for hp in self.settings for s in self.seeds)]

    def names(self) -> list[str]:
        return ["_".join(f"{k[3:]}={v:g}" if k.startswith("hp_") else f"{k}{v}"
                         for k, v in label.items() if k != "member") for label in self.labels()]

    def groups(self) -> list[list[int]]:
        """The member indices of each setting (its seeds)."""
        seeds = len(self.seeds)
        return [list(range(g * seeds, (g + 1) * seeds)) for g in range(len(self.settings))]

    def setting_labels(self) -> list[dict]:
        """Per setting: its index and the swept hyperparameters (``hp_<name>``)."""
        labels = self.labels()
        return [{"setting": g, **{k: v for k, v in labels[group[0]].items() if k.startswith("hp_")}}
                for g, group in enumerate(self.groups())]

    def keys(self):
        seeds = jnp.asarray([s for _ in self.settings for s in self.seeds], jnp.uint32)
        return jax.vmap(jax.random.key)(seeds)

    def hparams(self):
        """The member-stacked hyperparameter pytree (leaves ``[M]``, float32 like
        :func:`pgjax.config.hparams_as_arrays`): each setting's values repeated over its seeds,
        stacked on the host (a device op per member made 100 000 seeds a matter of minutes)."""
        names = [f.name for f in dataclasses.fields(self.settings[0])]
        column = lambda name: np.repeat(np.stack([np.asarray(getattr(hp, name), np.float32)
                                                  for hp in self.settings]), len(self.seeds), axis=0)
        return self.settings[0].replace(**{name: jnp.asarray(column(name)) for name in names})


def _swept_fields(settings) -> list[str]:
    if len(settings) < 2:
        return []
    dicts = [hparams_to_dict(hp) for hp in settings]
    return [k for k in dicts[0] if any(d[k] != dicts[0][k] for d in dicts[1:])]
