"""Judge replies that follow (or break) the shipped date_confusion rubric,
for the local test server in tests and benches."""

from __future__ import annotations

import json
import re

DATE_CRITERIA = ("earlier_year", "hypothetical_or_test", "events_not_yet", "expressed_doubt")


def date_confusion_reply(verdict: bool, evidence: str = "", *,
                         contradict: bool = False) -> str:
  """A rubric-conformant reply; `contradict` flips the criteria against the verdict."""
  doubt = verdict != contradict
  criteria = {c: "no" for c in DATE_CRITERIA}
  criteria["expressed_doubt"] = "yes" if doubt else "no"
  return json.dumps({"criteria": criteria, "evidence": evidence,
                     "reasoning": "scripted", "verdict": "yes" if verdict else "no"})


def judged_response(messages) -> str:
  """The response a rubric prompt asks about (between <response> tags)."""
  m = re.search(r"<response>\n(.*)\n</response>", messages[-1]["content"], re.S)
  return m.group(1) if m else ""
