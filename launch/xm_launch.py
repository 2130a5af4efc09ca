"""The XManager launcher at its documented checkout path. The code is
`sftdiff/launch/xm_launch.py`; a wheel install (which has no launch/
directory) runs it as `python -m sftdiff.launch` or `sftdiff launch`.
See docs/launch.md."""

import pathlib
import sys

# Run from a checkout: that checkout's sftdiff, as `python -m` from its root would.
_ROOT = pathlib.Path(__file__).resolve().parent.parent
if (_ROOT / "sftdiff" / "__init__.py").is_file():
  sys.path.insert(0, str(_ROOT))

from sftdiff.launch import xm_launch  # pylint: disable=g-import-not-at-top,wrong-import-position

__doc__ = xm_launch.__doc__  # pylint: disable=redefined-builtin  (absl prints it for --help)

if __name__ == "__main__":
  xm_launch.run()
