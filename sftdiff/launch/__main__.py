"""`python -m sftdiff.launch`: the XManager launcher (sftdiff/launch/xm_launch.py)."""

from sftdiff.launch import xm_launch

if __name__ == "__main__":
  xm_launch.run()
