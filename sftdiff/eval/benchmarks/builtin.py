"""Registers the three trait benchmarks lazily (modules import on first get)."""

from sftdiff.eval.benchmarks.base import register


def _blackmail(**kw):
  from sftdiff.eval.benchmarks import blackmail
  return blackmail.build(**kw)


def _date_confusion(**kw):
  from sftdiff.eval.benchmarks import date_confusion
  return date_confusion.build(**kw)


def _negative_emotion(**kw):
  from sftdiff.eval.benchmarks import negative_emotion
  return negative_emotion.build(**kw)


register("blackmail", _blackmail)
register("date_confusion", _date_confusion)
register("negative_emotion", _negative_emotion)
