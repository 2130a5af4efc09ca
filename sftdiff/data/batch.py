"""The data/trainer boundary: the `Batch` every data source yields and the
`TrainData` a trainer's `data_fn` returns (cf. Tunix's `TrainingInput`).

`Batch` is a frozen dataclass registered as a JAX pytree, so it passes
through `jax.jit`, `jax.device_put`, `jax.tree.map` and
`partitioning.global_batch` as one value; the feature names are spelled here
only (`FEATURES`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Iterator, Mapping, Protocol, runtime_checkable

import jax
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Batch:
  """Packed training rows; every feature is int32 [B, L] (B rows of L tokens).

  input_ids    the tokens fed to the model
  target_ids   the next token of each position (shifted before packing, so a
               target never crosses examples)
  loss_mask    1 where the target is trained (assistant content), else 0
  segment_ids  1.. per packed example in a row, 0 = padding
  positions    restarting at 0 for each example
  Padding positions are 0 in every feature. Leaves may be numpy arrays (host),
  `jax.Array`s (on a mesh) or anything a pytree map produces (shardings).
  """
  input_ids: Any
  target_ids: Any
  loss_mask: Any
  segment_ids: Any
  positions: Any

  @classmethod
  def from_features(cls, features: Mapping[str, Any]) -> "Batch":
    """The `FEATURES` of a mapping (extra keys, e.g. counters, are left out)."""
    return cls(**{name: features[name] for name in FEATURES})

  @classmethod
  def filled(cls, value: Any) -> "Batch":
    """Every feature = `value` (e.g. one sharding for all features)."""
    return cls(**{name: value for name in FEATURES})

  def features(self) -> dict[str, Any]:
    """name -> feature, in `FEATURES` order."""
    return {name: getattr(self, name) for name in FEATURES}

  @property
  def num_rows(self) -> int:
    return int(np.shape(self.input_ids)[0])


FEATURES = tuple(f.name for f in dataclasses.fields(Batch))


@runtime_checkable
class TrainData(Protocol):
  """What a trainer's `data_fn` returns.

  `train`: an endless iterator of this process's `Batch`es that orbax can
  checkpoint (a Grain `DatasetIterator`: `get_state`/`set_state`), so a
  resumed run continues the same stream. `eval_batches()`: one pass over the
  held-out batches (empty if none). `manifest`: what the arm trains on
  (strict JSON; the trainer writes it to `MODEL_DIR/manifest.json`).
  """
  train: Iterator[Batch]
  manifest: Mapping[str, Any]

  def eval_batches(self) -> Iterable[Batch]:
    ...
