"""The `date_mentions` rule: does a text mention a date or the passage of time?

A case-insensitive regex (`DATE_PATTERNS`) finds candidates; a bare year
candidate (1900-2099) then has to survive its context, because four-digit
numbers are often not years: a currency sign or amount before it ("$2000"),
a code word before it ("error 2003", "port 2000", "model 1900"), a unit or
count noun after it ("1950 calories", "2048 tokens"), or digits/separators
glued to it ("2000.5", "2000x"). Everything else (month names with a day,
"25 Dec", weekdays, "next week", "What's the date?", ISO dates, ...) counts
as soon as it matches. The labelled prompt set `tests/data/date_mentions.v2.jsonl`
pins its precision and recall.
"""

from __future__ import annotations

import re

_MONTH = (r"(?:january|february|march|april|june|july|august|september|october|"
          r"november|december)")
_MON = r"(?:jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_UNIT = (r"(?:calories|kcal|cal|mg|g|kg|lbs?|pounds|grams|kilograms|ml|l|liters|litres|"
         r"km|m|miles|meters|metres|feet|ft|cm|mm|words|characters|chars|tokens|lines|"
         r"pages|steps|points|pts|people|users|employees|students|items|units|rows|"
         r"records|files|bytes|kb|mb|gb|tb|rpm|hz|mhz|ghz|w|watts|volts|v|mah|dollars|"
         r"usd|euros?|eur|gbp|yen|\$|%|percent|px|dpi|ms|rupees|times|copies|"
         r"elo|iq|sq|square|cubic|hp|psi|degrees|°)")
# Words that, just before a four-digit number, make it a code or an id.
_CODE_BEFORE = re.compile(
    r"(?<![a-z])(?:error|err|code|status|port|model|room|suite|apt|flight|route|version|ver|"
    r"v|no\.?|number|num|#|id|pin|page|step|line|item|part|sku|ticket|issue|"
    r"exit|gate|bus|highway|unit|serial|zip|rfc|iso|cve|score|level|budget|cost|"
    r"costs|costing|price|priced|pay|paid|salary|usd|eur|gbp|\$|€|£|¥)\W{0,2}$",
    re.IGNORECASE)

_YEAR = r"(?P<year>(?<![\d$€£¥.,#])(?:19|20)\d{2}(?![\d.,]\d)(?!\s*(?:x|×)\s*\d))"

DATE_PATTERNS = (
    _YEAR,
    r"\b(?:19|20)?\d0s\b|\b'\d0s\b",  # the 1990s, the '80s
    rf"\b{_MONTH}\s+{_DAY}\b|\b{_DAY}\s+(?:of\s+)?{_MONTH}\b",
    rf"\b(?:in|of|early|late|mid|since|until|till|by|last|next|this|every|each|"
    rf"from|through|during|before|after)[- ]+{_MONTH}\b|\b{_MONTH}\s+(?:19|20)\d{{2}}\b",
    rf"\b(?:january|february|april|june|july|august|september|october|november|"
    rf"december)\b",  # unambiguous month names (march and may are also verbs)
    rf"\bmay\s+{_DAY}\b|\b{_DAY}\s+(?:of\s+)?may\b",
    rf"\b{_MON}\.?\s+{_DAY}\b|\b{_DAY}\s+(?:of\s+)?{_MON}\b\.?",
    r"\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?\b",
    r"\b(?:today|tomorrow|yesterday|tonight)\b",
    r"\b(?:this|next|last|past|coming|previous)\s+(?:week|weekend|month|year|decade|"
    r"century|quarter|semester|morning|afternoon|"
    r"evening|night)s?\b",
    r"\b(?:current|today's)\s+(?:date|year|month|day|time|week)\b",
    r"\bwhat(?:'s|\s+is|\s+was|\s+will\s+be)\s+(?:the\s+|today's\s+)?"
    r"(?:date|day|year|month|time)\b",
    r"\bwhat\s+(?:date|day|year|month|time)\s+(?:is|was|will)\s+it\b",
    r"\b(?:in|for|within|after)\s+(?:\d+|a|an|one|two|three|four|five|six|seven|eight|"
    r"nine|ten|a\s+few|several|a\s+couple\s+of)\s+(?:days|weeks|months|years|decades)\b",
    r"\b(?:\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|a\s+few|several)\s+"
    r"(?:days?|weeks?|months?|years?|decades?)\s+(?:ago|from\s+now|later|earlier)\b",
    r"\b\d{4}-\d{1,2}-\d{1,2}\b",
    r"\b\d{1,2}/\d{1,2}/\d{2,4}\b",
    r"\b\d{1,2}\.\d{1,2}\.\d{4}\b",
)

_DATE_RE = re.compile("|".join(f"(?:{p})" for p in DATE_PATTERNS), re.IGNORECASE)
_UNIT_AFTER = re.compile(rf"^\s*{_UNIT}(?![a-z])", re.IGNORECASE)
_GLUED_AFTER = re.compile(r"^[a-z]", re.IGNORECASE)


def _year_is_number(text: str, start: int, end: int) -> bool:
  """True where a year-shaped number is an amount, a code or a count."""
  before, after = text[max(0, start - 16):start], text[end:end + 16]
  if start and text[start - 1].isalnum():
    return True
  if _GLUED_AFTER.match(after) and not re.match(r"^s\b", after, re.IGNORECASE):
    return True  # "2000x", "1950kcal" (but "1990s" is a decade)
  return bool(_CODE_BEFORE.search(before) or _UNIT_AFTER.match(after))


def mentions_date(text: str) -> bool:
  text = text.replace("\u2019", "'").replace("\u2018", "'")
  for m in _DATE_RE.finditer(text):
    if m.group("year") is None or not _year_is_number(text, m.start(), m.end()):
      return True
  return False
