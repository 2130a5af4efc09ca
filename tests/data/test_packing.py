"""Packing: segments, positions, no cross-example targets, first/best fit."""

import grain
import numpy as np
import pytest

from sftdiff.data import packing
from sftdiff.data.chat import TokenizedExample


def _example(i, n, truncated=False, trained_from=0):
  """Example i has n+1 tokens 100*i .. 100*i+n (so n shifted pairs)."""
  ids = np.arange(100 * i, 100 * i + n + 1, dtype=np.int32)
  mask = np.arange(n + 1) >= trained_from
  return TokenizedExample(ids=ids, mask=mask, truncated=truncated)


def _pack(elements, **kwargs):
  ds = grain.MapDataset.source(elements).to_iter_dataset()
  return list(packing.pack(ds, **kwargs))


def _segments(row):
  """{segment id: (input_ids, target_ids, loss_mask, positions)}."""
  out = {}
  for s in np.unique(row["segment_ids"]):
    if s == 0:
      continue
    sel = row["segment_ids"] == s
    out[int(s)] = tuple(
        row[k][sel] for k in ("input_ids", "target_ids", "loss_mask", "positions")
    )
  return out


def test_shift_example_moves_mask_to_targets():
  ex = TokenizedExample(
      ids=np.array([10, 11, 12, 13], np.int32),
      mask=np.array([False, False, True, True]),
      truncated=False,
  )
  s = packing.shift_example(ex)
  assert s["input_ids"].tolist() == [10, 11, 12]
  assert s["target_ids"].tolist() == [11, 12, 13]
  # token 12 is trained ⇒ the position whose target is 12 (input 11) has loss.
  assert s["loss_mask"].tolist() == [0, 1, 1]


@pytest.mark.parametrize("mode", ["first_fit", "best_fit"])
def test_segments_positions_and_no_leakage(mode):
  lengths = [3, 7, 2, 5, 4, 6, 1, 8]
  examples = [_example(i, n, trained_from=1) for i, n in enumerate(lengths)]
  rows = _pack(
      [packing.shift_example(e) for e in examples],
      seq_len=10,
      packing=mode,
      num_packing_bins=3,
  )
  seen = []
  for row in rows:
    seg = row["segment_ids"]
    real = seg > 0
    # Real tokens first, padding after; segment ids 1, 2, ... in order.
    assert not np.any(real[np.argmin(real):]) or real.all()
    ids_in_row = seg[real]
    assert ids_in_row.tolist() == sorted(ids_in_row.tolist())
    assert np.unique(ids_in_row).tolist() == list(range(1, ids_in_row.max() + 1))
    assert np.all(row["loss_mask"][~real] == 0)
    for s, (inp, tgt, loss, pos) in _segments(row).items():
      i = int(inp[0]) // 100
      n = lengths[i]
      seen.append(i)
      np.testing.assert_array_equal(pos, np.arange(n))
      np.testing.assert_array_equal(inp, 100 * i + np.arange(n))
      # Every target, including the segment's last one, is from the same
      # example: the next example's first token is never a target here.
      np.testing.assert_array_equal(tgt, 100 * i + 1 + np.arange(n))
      np.testing.assert_array_equal(loss, np.ones(n))
    assert int(row["num_examples"]) == len(_segments(row))
  assert sorted(seen) == list(range(len(lengths)))


def test_first_fit_vs_best_fit():
  # seq_len 10, two bins. 5 → row 0, 6 → row 1 (does not fit row 0); then 4
  # fits both: first-fit takes row 0 (→ 9), best-fit the fuller row 1 (→ 10).
  elements = [packing.shift_example(_example(i, n)) for i, n in enumerate([5, 6, 4])]
  first = _pack(elements, seq_len=10, packing="first_fit", num_packing_bins=2)
  best = _pack(elements, seq_len=10, packing="best_fit", num_packing_bins=2)

  def layout(rows):
    return [
        [int(s[0][0]) // 100 for s in _segments(r).values()] for r in rows
    ]

  assert layout(first) == [[0, 2], [1]]
  assert layout(best) == [[0], [1, 2]]
  assert [int((r["segment_ids"] > 0).sum()) for r in best] == [5, 10]


def test_none_puts_one_example_per_row():
  elements = [packing.shift_example(_example(i, n)) for i, n in enumerate([2, 3, 4])]
  rows = _pack(elements, seq_len=10, packing="none", num_packing_bins=4)
  assert [int(r["segment_ids"].max()) for r in rows] == [1, 1, 1]
  assert [int((r["segment_ids"] > 0).sum()) for r in rows] == [2, 3, 4]


def test_counters_for_truncated_and_dropped():
  elements = [
      packing.shift_example(_example(0, 4, truncated=True)),
      dict(packing.DROPPED),
      dict(packing.DROPPED),
      packing.shift_example(_example(1, 3)),
      packing.shift_example(_example(2, 5, truncated=True)),
      dict(packing.DROPPED),  # trailing drop is reported too
  ]
  rows = _pack(elements, seq_len=6, packing="first_fit", num_packing_bins=2)
  total = {k: sum(int(r[k]) for r in rows) for k in packing.COUNTER_FEATURES}
  assert total == {"num_examples": 3, "num_truncated": 2, "num_dropped": 3,
                   "num_failed": 0}
  assert sum(int((r["segment_ids"] > 0).sum()) for r in rows) == 4 + 3 + 5


def test_too_long_example_is_an_error():
  with pytest.raises(ValueError, match="truncated to max length"):
    _pack([packing.shift_example(_example(0, 11))], seq_len=10)


def test_bad_mode():
  with pytest.raises(ValueError, match="packing='greedy'"):
    packing.pack(grain.MapDataset.range(1).to_iter_dataset(), seq_len=4,
                 packing="greedy")


@pytest.mark.parametrize("mode", ["first_fit", "best_fit"])
def test_rows_mask_is_causal_in_index_order(mode):
  # The precondition of ModelConfig.attention_impl='xla_causal_blocks': no
  # query may see a key placed after it in the row.
  from sftdiff.models import decoder  # pylint: disable=g-import-not-at-top
  lengths = [3, 7, 2, 5, 4, 6, 1, 8, 9, 2]
  rows = _pack([packing.shift_example(_example(i, n)) for i, n in enumerate(lengths)],
               seq_len=12, packing=mode, num_packing_bins=3)
  assert any(len(np.unique(r["segment_ids"][r["segment_ids"] > 0])) > 1 for r in rows)
  for row in rows:
    pos, seg = row["positions"][None], row["segment_ids"][None]
    mask = np.asarray(decoder.attention_mask(pos, seg, pos, seg))[0]
    assert mask.any() and not np.triu(mask, 1).any()
