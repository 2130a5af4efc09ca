"""How long a server asked us to wait: `Retry-After` (seconds or HTTP-date)
and the non-standard `retry-after-ms` some providers send."""

from __future__ import annotations

import email.utils
import time
from typing import Mapping


def requested_wait_s(headers: Mapping[str, str] | None,
                     now: float | None = None) -> float | None:
  """Seconds the server asked for, or None when it asked nothing usable.

  An HTTP-date is converted against `now` (the wall clock by default: the
  header is an absolute time, so this one value must read it).
  """
  if not headers:
    return None
  ms = headers.get("retry-after-ms")
  if ms is not None:
    try:
      return max(0.0, float(ms) / 1000.0)
    except ValueError:
      pass
  value = headers.get("retry-after")
  if value is None:
    return None
  value = value.strip()
  try:
    return max(0.0, float(value))
  except ValueError:
    pass
  try:
    when = email.utils.parsedate_to_datetime(value)
  except (TypeError, ValueError):
    return None
  if when is None:
    return None
  return max(0.0, when.timestamp() - (time.time() if now is None else now))
