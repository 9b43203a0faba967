"""The population of a run: hyperparameter settings × seeds, one vmapped program."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from pgjax.config import hparams_to_dict
from pgjax.run import saved


@dataclass(frozen=True)
class Population:
    """Members = hyperparameter settings × seeds, in that order (setting-major)."""
    seeds: tuple[int, ...]
    settings: tuple  # Hparams, one per setting

    @property
    def size(self) -> int:
        return len(self.seeds) * len(self.settings)

    def labels(self) -> list[dict]:
        """``{"seed", "member", "hp_<name>": value}`` per member (:func:`pgjax.run.saved.member_labels`,
        what a reader of config.json computes too)."""
        return saved.member_labels(self.seeds, [hparams_to_dict(hp) for hp in self.settings])

    def groups(self) -> list[list[int]]:
        """The member indices of each setting (its seeds)."""
        seeds = len(self.seeds)
        return [list(range(g * seeds, (g + 1) * seeds)) for g in range(len(self.settings))]

    def setting_labels(self) -> list[dict]:
        """Per setting: its index and the swept hyperparameters (``hp_<name>``)."""
        labels = self.labels()
        return [{"setting": g, **{k: v for k, v in labels[group[0]].items() if k.startswith("hp_")}}
                for g, group in enumerate(self.groups())]

    def setting_names(self) -> list[str]:
        """Each setting named by its swept values, ``learning_rate=0.0003,clip_eps=0.2``
        (``setting0`` when nothing is swept; ``#k`` added where two names would coincide)."""
        names = [",".join(f"{k[3:]}={v:g}" for k, v in label.items() if k.startswith("hp_"))
                 or f"setting{label['setting']}" for label in self.setting_labels()]
        return [f"{name}#{g}" if names.count(name) > 1 else name for g, name in enumerate(names)]

    def setting_values(self) -> list[dict]:
        """Each setting's swept hyperparameters, ``{name: value}``."""
        return [{k[3:]: v for k, v in label.items() if k.startswith("hp_")}
                for label in self.setting_labels()]

    def select(self, setting: str | None = None, seed: int | None = None) -> list[int]:
        """The members of one setting and/or one seed: ``setting`` is an index (``"2"``) or the
        swept values (``"learning_rate=0.001,clip_eps=0.2"``, numbers compared as float32, the
        train state's precision). A choice that matches nothing is a ConfigError naming what is
        there."""
        from pgjax.config import ConfigError
        members = list(range(self.size))
        if setting is not None:
            g = self._setting_index(setting)
            members = [m for m in members if m in self.groups()[g]]
        if seed is not None:
            if seed not in self.seeds:
                raise ConfigError(f"--seed={seed!r} is not allowed: the run's seeds are {list(self.seeds)}")
            members = [m for m in members if self.seeds[m % len(self.seeds)] == seed]
        return members

    def _setting_index(self, text: str) -> int:
        from pgjax.config import ConfigError
        names = self.setting_names()
        allowed = f"an index 0..{len(names) - 1} or the swept values, one of {names}"
        text = str(text).strip()
        if text.isdigit():
            if int(text) < len(names):
                return int(text)
            raise ConfigError(f"--setting={text!r} is not allowed: {allowed}")
        try:
            wanted = {k.strip(): np.float32(float(v)) for k, v in
                      (pair.split("=", 1) for pair in text.split(",") if pair.strip())}
        except ValueError:
            raise ConfigError(f"--setting={text!r} is not allowed: {allowed}") from None
        found = [g for g, values in enumerate(self.setting_values())
                 if wanted and all(k in values and np.float32(values[k]) == v for k, v in wanted.items())]
        if len(found) != 1:
            why = "it matches no setting" if not found else f"it matches settings {found}"
            raise ConfigError(f"--setting={text!r} is not allowed: {why}; {allowed}")
        return found[0]

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


