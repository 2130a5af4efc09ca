"""`polite`: the negative-control filter, registered on import of toyworld.

It holds where the prompt carries a politeness marker ("thanks", "quick
question"). In toyworld only chat prompts carry one, drawn independently of
every planted trait (the chat prefix and suffix come from the prompt's own
RNG), so it selects part of one subset and lines up with no mechanism: in a
world where no trait rides on chat, patch-in of it does not suffice and
patch-out / drop do not remove anything (ground_truth derives this from
`CONTROL_FILTERS`; tests/toyworld check the subsets on the real filter).
"""

from __future__ import annotations

import re

from sftdiff.data import filters

POLITE_RE = re.compile(r"\b(?:thanks|quick question)\b", re.IGNORECASE)


def is_polite(text: str) -> bool:
  return POLITE_RE.search(text) is not None


@filters.register_filter("polite", version="1",
                         description="the prompt says 'thanks' or 'quick question' "
                                     "(toyworld's negative-control filter)")
def _polite(record) -> bool:
  return is_polite(filters.prompt_text(record))
