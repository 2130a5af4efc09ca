"""The XManager launcher, kept at its documented path: the code is
`sftdiff/launch/xm_launch.py` (run it as `python -m sftdiff.launch` from a
wheel install, where this file does not exist). See docs/launch.md."""

import pathlib
import sys

try:
  import sftdiff  # noqa: F401  an installed package (wheel or editable)
except ImportError:  # a bare checkout: use it
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from sftdiff.launch import xm_launch  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  xm_launch.run()
