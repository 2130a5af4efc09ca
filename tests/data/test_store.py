"""The joined store's read side (`sftdiff.data.store`): random access, columns,
and memory hygiene (one reader per process, nothing big pickled)."""

import pickle
import threading

import pytest

from sftdiff.data import example_data
from sftdiff.data import filters
from sftdiff.data import store as store_lib
from sftdiff.data import store_build


def test_build_and_random_access(example):
  _, prompts, srcs, store_dir = example
  store = store_build.build_store(prompts, srcs, store_dir)
  assert len(store) == 12 and store.sources == ["alt", "teacher"]
  assert store.subsets == ["chat", "code", "safety"]
  rec = store[7]
  assert rec["prompt_id"] == "p08" and rec["subset"] == "code"
  assert rec["prompt"][-1] == {"role": "user",
                               "content": example_data.PROMPTS["p08"][1]}
  assert rec["completions"]["teacher"][0]["content"] == example_data.teacher_reply("p08")
  assert [r["prompt_id"] for r in store.read([11, 0])] == ["p12", "p01"]
  assert [r["prompt_id"] for r in store] == list(example_data.PROMPTS)
  with pytest.raises(IndexError, match="store index 12 out of range"):
    store[12]
  cols = store.selection_columns()
  assert list(cols["prompt_id"]) == list(example_data.PROMPTS)
  for name, expected in example_data.EXPECTED_LABELS.items():
    assert set(cols["prompt_id"][filters.mask(name, cols, store.sources)]) == expected
  assert (cols["id_hash"] == store_lib.id_hash(list(example_data.PROMPTS))).all()
  assert store.meta["prompt_id_provenance"]["prompt_set"] == {"id_field": 12}


def test_store_reader_is_opened_once_by_concurrent_threads(example, monkeypatch):
  _, prompts, srcs, store_dir = example
  built = store_build.build_store(prompts, srcs, store_dir)
  ids = list(built.columns(["prompt_id"])["prompt_id"])
  from array_record.python import array_record_module
  opened = []
  real = array_record_module.ArrayRecordReader

  def counting(*args, **kwargs):
    opened.append(threading.get_ident())
    return real(*args, **kwargs)

  monkeypatch.setattr(array_record_module, "ArrayRecordReader", counting)
  store = pickle.loads(pickle.dumps(built))  # As a Grain worker gets it.
  barrier = threading.Barrier(8)
  got = {}

  def read(k):
    barrier.wait()
    got[k] = store[k % len(store)]["prompt_id"]

  threads = [threading.Thread(target=read, args=(k,)) for k in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert len(opened) == 1
  assert [got[k] for k in range(8)] == [ids[k % len(ids)] for k in range(8)]


def test_pickled_store_carries_no_columns(example):
  _, prompts, srcs, store_dir = example
  store = store_build.build_store(prompts, srcs, store_dir)
  store.selection_columns()
  assert set(store.__getstate__()) == {"path", "meta"}
  clone = pickle.loads(pickle.dumps(store))
  assert clone._columns == {} and clone._reader is None


def test_read_dense_and_sparse_indices(example):
  _, prompts, srcs, store_dir = example
  store = store_build.build_store(prompts, srcs, store_dir)
  ids = store.columns(["prompt_id"])["prompt_id"]
  for idx in ([3, 1, 2, 2], [0, len(store) - 1], [5], []):
    assert [r["prompt_id"] for r in store.read(idx)] == [ids[i] for i in idx]
  with pytest.raises(IndexError):
    store.read([len(store)])


def test_coverage_summary_names_store_and_sources(example):
  _, prompts, srcs, store_dir = example
  store = store_build.build_store(prompts, srcs, store_dir)
  text = store_lib.coverage_summary(store)
  assert text.startswith(f"store {store.path}\n")
  assert "12 prompts, sources alt, teacher" in text
