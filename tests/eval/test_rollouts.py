"""Teacher rollouts from an API teacher (real local HTTP) and a local checkpoint."""

import json

import pytest

from sftdiff.data import records
from sftdiff.eval import rollouts
from sftdiff.eval.api_client import ApiConfig
from sftdiff.eval.run import TeacherConfig
from sftdiff.testing.openai_server import OpenAITestServer

SECRET = "sk-rollout-SECRET-42"


def _prompts(path, n):
  with open(path, "w") as f:
    for i in range(n):
      f.write(json.dumps({"prompt_id": f"id{i}", "subset": "a" if i % 2 else "b",
                          "messages": [{"role": "user", "content": f"question {i}"}]}) + "\n")
  return path


def test_api_teacher_rollouts_resume(tmp_path, monkeypatch, caplog):
  monkeypatch.setenv("ROLLOUT_KEY", SECRET)
  prompts = _prompts(tmp_path / "p.jsonl", 5)
  out = tmp_path / "teacher.jsonl"
  with OpenAITestServer(lambda m, b: f"answer to {m[-1]['content']} (seed {b['seed']})",
                        faults=["500", "429"]) as server:
    teacher = TeacherConfig(name="t1", api=ApiConfig(
        model="teacher-model", base_url=server.base_url, api_key_env="ROLLOUT_KEY",
        initial_backoff_s=0.01))
    kw = dict(prompts_path=str(prompts), output_path=str(out), source_name="teacher",
              teacher=teacher, temperature=0.7, max_new_tokens=64, seed=3)
    r1 = rollouts.run_rollouts(limit=3, **kw)
    assert r1["generated"] == 3 and server.ok_calls == 3
    with open(out, "a") as f:
      f.write('{"prompt_id": "id3", "compl')  # torn line from a kill
    r2 = rollouts.run_rollouts(**kw)
    assert r2 == {"prompts": 5, "generated": 2, "already_done": 3, "output": str(out)}
    assert server.ok_calls == 5
    bodies = server.bodies
  recs = [json.loads(l) for l in out.read_text().splitlines()]
  assert [r["prompt_id"] for r in recs] == [f"id{i}" for i in range(5)]
  r = recs[1]
  assert r["source"] == "teacher"
  assert r["completion"][0]["content"].startswith("answer to question 1")
  assert r["meta"]["teacher"].startswith("api:t1@") and r["meta"]["sampling"]["temperature"] == 0.7
  assert r["meta"]["subset"] == "a"
  assert all(b["temperature"] == 0.7 and b["max_tokens"] == 64 for b in bodies)
  # Accepted by the data side's source reader.
  rec, _ = records.to_source_record(r, "teacher", "teacher.jsonl:2")
  assert rec["completion"][0]["role"] == "assistant"
  assert SECRET not in out.read_text() and SECRET not in caplog.text


def test_needs_exactly_one_teacher(tmp_path):
  from sftdiff.gin_utils import GinConfigError
  prompts = _prompts(tmp_path / "p.jsonl", 1)
  with pytest.raises(GinConfigError, match="exactly one"):
    rollouts.run_rollouts(prompts_path=str(prompts), output_path=str(tmp_path / "o.jsonl"),
                          source_name="s")
  with pytest.raises(GinConfigError, match="output_path"):
    rollouts.run_rollouts(prompts_path=str(prompts), source_name="s")


@pytest.mark.slow
def test_local_checkpoint_rollouts(tmp_path):
  from sftdiff.testing.models import write_random_hf_checkpoint
  from sftdiff.testing.tokenizer import write_test_tokenizer
  write_test_tokenizer(str(tmp_path / "m"))
  write_random_hf_checkpoint(tmp_path / "m", "llama", vocab_size=512)
  prompts = _prompts(tmp_path / "p.jsonl", 3)
  kw = dict(prompts_path=str(prompts), source_name="local", checkpoint=str(tmp_path / "m"),
            max_new_tokens=6, temperature=1.0, dtype="float32")
  rollouts.run_rollouts(output_path=str(tmp_path / "a.jsonl"), **kw)
  rollouts.run_rollouts(output_path=str(tmp_path / "b.jsonl"), chunk_size=1, **kw)
  a = [json.loads(l) for l in (tmp_path / "a.jsonl").read_text().splitlines()]
  b = [json.loads(l) for l in (tmp_path / "b.jsonl").read_text().splitlines()]
  # Same seed => same rollouts, however the prompts were chunked.
  assert [r["completion"] for r in a] == [r["completion"] for r in b]
  assert a[0]["meta"]["teacher"].startswith("checkpoint:")
