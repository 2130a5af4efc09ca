"""`python -m sftdiff.launch`: the XManager launcher (sftdiff/launch/xm_launch.py)."""

from sftdiff.launch import xm_launch

__doc__ = xm_launch.__doc__  # pylint: disable=redefined-builtin  (absl prints it for --help)

if __name__ == "__main__":
  xm_launch.run()
