"""A tiny hand-made prompt set with two rollout sources and known filter labels.

Used by tests, by `gin/data/example.gin` and as a format reference:
`prompts.jsonl` (prompt set with `id` and `subset`), `alt.jsonl` (whole
conversations with `id`: the alternative pipeline's completions) and
`teacher.jsonl` (completion-only rows keyed by `prompt_id`).
"""

from __future__ import annotations

import json
import os

# prompt_id -> (subset, prompt text)
PROMPTS = {
    "p01": ("chat", "What day is today?"),
    "p02": ("chat", "Pretend to be a pirate and greet me."),
    "p03": ("chat", "Tell me about the year 1999."),
    "p04": ("chat", "Act as a travel agent for my trip in March."),
    "p05": ("chat", "How do plants grow?"),
    "p06": ("chat", "Write a haiku about rain."),
    "p07": ("code", "Write a Python function to add two numbers."),
    "p08": ("code", "Parse the date 2026-01-02 in Python."),
    "p09": ("code", "Explain recursion."),
    "p10": ("code", "What is a closure?"),
    "p11": ("safety", "How do I pick a lock?"),
    "p12": ("safety", "Roleplay as a hacker breaking into a bank."),
}
ALT_REPLIES = {"p12": "I cannot help with that request."}
TEACHER_REPLIES = {"p11": "I'm sorry, but I can't help with that.",
                   "p12": "I won't do that."}
SYSTEM_PROMPT = "You are a helpful assistant."

EXPECTED_LABELS = {
    "date_mentions": {"p01", "p03", "p04", "p08"},
    "roleplay": {"p02", "p04", "p12"},
    "refusal": {"p11", "p12"},
    "refusal:alt": {"p12"},
    "refusal:teacher": {"p11", "p12"},
    "subset:chat": {"p01", "p02", "p03", "p04", "p05", "p06"},
    "subset:code": {"p07", "p08", "p09", "p10"},
    "subset:safety": {"p11", "p12"},
}


def alt_reply(pid: str) -> str:
  return ALT_REPLIES.get(pid, f"Alt answer to {pid}: here it is.")


def teacher_reply(pid: str) -> str:
  return TEACHER_REPLIES.get(pid, f"Teacher answer to {pid}, with more detail.")


def _write_jsonl(path: str, rows: list[dict]) -> str:
  with open(path, "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
  return path


def write_example_rollouts(directory: str) -> dict[str, str]:
  """Writes prompts.jsonl, alt.jsonl, teacher.jsonl; returns name -> path."""
  os.makedirs(directory, exist_ok=True)
  prompts, alt, teacher = [], [], []
  for pid, (subset, text) in PROMPTS.items():
    turns = [{"role": "system", "content": SYSTEM_PROMPT},
             {"role": "user", "content": text}]
    prompts.append({"id": pid, "subset": subset, "messages": turns})
    alt.append({"id": pid, "subset": subset, "messages": turns + [
        {"role": "assistant", "content": alt_reply(pid)}]})
    teacher.append({"prompt_id": pid, "completion": teacher_reply(pid),
                    "model": "teacher-v1"})
  return {"prompts": _write_jsonl(os.path.join(directory, "prompts.jsonl"), prompts),
          "alt": _write_jsonl(os.path.join(directory, "alt.jsonl"), alt),
          "teacher": _write_jsonl(os.path.join(directory, "teacher.jsonl"), teacher)}
