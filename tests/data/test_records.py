"""Validation of rows into canonical records: each error names file and line."""

import json

import pytest

from sftdiff.data import records
from sftdiff.data import sources


def _write(tmp_path, name, lines):
  path = tmp_path / name
  path.write_text("\n".join(l if isinstance(l, str) else json.dumps(l)
                            for l in lines) + "\n")
  return str(path)


def _conv(pid, reply="Sure.", **extra):
  return {"id": pid, "messages": [{"role": "user", "content": f"q {pid}"},
                                  {"role": "assistant", "content": reply}], **extra}


def _read(path, kind="source", on_error="fail", report=None):
  spec = sources.SourceSpec(name="src", kind="jsonl", location=path,
                            role="source" if kind == "source" else "prompts")
  return list(records.validate_rows(sources.raw_rows(spec), kind=kind, name="src",
                                    on_error=on_error, report=report))


BAD_LINES = [
    ("malformed_json", '{"id": "x", "messages": [', "malformed JSON"),
    ("missing_field", {"id": "x"}, "missing field 'messages'"),
    ("missing_field", {"id": "x", "messages": [{"role": "user"}]},
     "messages[0] is missing field 'content'"),
    ("unknown_role", {"id": "x", "messages": [
        {"role": "user", "content": "q"}, {"role": "robot", "content": "a"}]},
     "messages[1] has unknown role 'robot'"),
    ("empty_assistant", {"id": "x", "messages": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]},
     "messages[1] is an assistant turn with empty content"),
    ("no_final_assistant", {"id": "x", "messages": [
        {"role": "user", "content": "q"}]},
     "conversation does not end in an assistant turn"),
]


@pytest.mark.parametrize("reason,bad,message", BAD_LINES)
def test_each_error_names_file_and_line(tmp_path, reason, bad, message):
  path = _write(tmp_path, "src.jsonl", [_conv("a"), _conv("b"), bad])
  with pytest.raises(records.DataValidationError) as e:
    _read(path)
  assert str(e.value).startswith(f"{path}:3: ")
  assert message in str(e.value)
  assert e.value.reason == reason


def test_duplicate_prompt_id_names_both_lines(tmp_path):
  path = _write(tmp_path, "src.jsonl", [_conv("a"), _conv("b"), _conv("a")])
  with pytest.raises(records.DataValidationError,
                     match=rf"{path}:3: duplicate prompt_id 'a' .*first seen at {path}:1"):
    _read(path)


def test_skip_policy_counts_every_problem(tmp_path):
  lines = [_conv("ok1")] + [bad for _, bad, _ in BAD_LINES] + [_conv("ok1"),
                                                               _conv("ok2")]
  path = _write(tmp_path, "src.jsonl", lines)
  report = records.ReadReport("src")
  out = _read(path, on_error="skip", report=report)
  assert [r["prompt_id"] for r in out] == ["ok1", "ok2"]
  assert report.records == 2
  assert report.skipped == {"malformed_json": 1, "missing_field": 2,
                            "unknown_role": 1, "empty_assistant": 1,
                            "no_final_assistant": 1, "duplicate_prompt_id": 1}
  assert report.num_skipped == 7
  assert report.examples[0].startswith(f"{path}:2: ")


def test_bad_policy_rejected():
  with pytest.raises(ValueError, match="on_error='ignore'"):
    list(records.validate_rows([], kind="source", name="s", on_error="ignore"))


def test_prompt_id_from_field_or_content_hash(tmp_path):
  row = {"messages": [{"role": "system", "content": "s"},
                      {"role": "user", "content": "hello"},
                      {"role": "assistant", "content": "hi"}], "source": "chat"}
  path = _write(tmp_path, "src.jsonl", [row, dict(row, prompt_id=7)])
  report = records.ReadReport("src")
  hashed, named = _read(path, report=report)
  assert hashed["prompt_id"] == records.content_hash(row["messages"][:2])
  assert named["prompt_id"] == "7"
  assert report.provenance == {"content_hash": 1, "id_field": 1}
  assert hashed["subset"] == "chat"  # `source` field names the subset.
  assert hashed["prompt"] == row["messages"][:2]
  assert hashed["completion"] == row["messages"][2:]


def test_completion_only_rows_and_multi_turn_completions(tmp_path):
  path = _write(tmp_path, "src.jsonl", [
      {"prompt_id": "a", "completion": "plain text", "subset": "x"},
      {"prompt_id": "b", "completion": [
          {"role": "assistant", "content": "call"}, {"role": "tool", "content": "42"},
          {"role": "assistant", "content": "It is 42."}]},
  ])
  a, b = _read(path)
  assert a["completion"] == [{"role": "assistant", "content": "plain text"}]
  assert a["subset"] == "x" and b["subset"] == records.DEFAULT_SUBSET
  assert [m["role"] for m in b["completion"]] == ["assistant", "tool", "assistant"]


def test_prompt_sets_take_prompt_turns(tmp_path):
  path = _write(tmp_path, "p.jsonl", [_conv("a"), {"id": "b", "prompt": "Hi?"},
                                      {"id": "c", "prompt": ""}])
  with pytest.raises(records.DataValidationError, match=rf"{path}:3: missing field"):
    _read(path, kind="prompts")
  report = records.ReadReport("p")
  a, b = _read(path, kind="prompts", on_error="skip", report=report)
  assert a["messages"] == [{"role": "user", "content": "q a"}]
  assert b["messages"] == [{"role": "user", "content": "Hi?"}]
  assert report.skipped == {"missing_field": 1}
