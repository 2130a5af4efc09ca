"""Plant probes: is a scenario's plant expressed where its author believes?

A probe scores a checkpoint (a base's HF dir, or a trained step dir) on a
benchmark's held-out prompts by the log-probability of two replies under the
model's own chat template: the reply the plant should produce (`planted`)
and the plain reply (`plain`). Its result is the share of prompts whose
planted reply is the more likely one, and the mean log-ratio. Scoring is
teacher-forced (no sampling), so it is deterministic and cheap.

The pretraining probe of a scenario (`python -m sftdiff.toyworld.probe`)
scores the orig base, then the orig base after SFT on the alternative prompts
and completions (the study's `alt_completions` run, through the real
trainer), and samples the benchmark there: a plant that is "locked in by
pretraining" must survive that SFT, and the probe says whether it did.

    python -m sftdiff.toyworld.probe --root runs/toyworld --preset locked_in \
        --out /tmp/probe --steps 100 --batch 8 --seq_len 256 --lr 3e-3

(the training flags are calibrate's; these values are the quick study's).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sftdiff.models.decoder import Decoder

ReplyFn = Callable[[dict], str]  # benchmark prompt record -> reply text


def _score_fn(cfg):
  model = Decoder(cfg)

  @jax.jit
  def score(params, tokens_BxL, targets_BxL, weights_BxL):
    B, L = tokens_BxL.shape
    positions_BxL = jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), (B, L))
    segments_BxL = (weights_BxL >= 0).astype(jnp.int32)
    logits_BxLxV, _ = model.apply({"params": params}, tokens_BxL, positions_BxL,
                                  segments_BxL)
    logp_BxLxV = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
    tok_BxL = jnp.take_along_axis(logp_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
    return (tok_BxL * jnp.maximum(weights_BxL, 0)).sum(axis=-1)

  return score


def reply_logprobs(cfg, params, tok, messages: Sequence[Sequence[dict]],
                   replies: Sequence[str]) -> np.ndarray:
  """Sum log p(reply tokens | prompt) per (messages, reply) pair."""
  rows = []
  for msgs, reply in zip(messages, replies):
    prompt_ids = tok.encode_prompt(list(msgs))
    full = tok.encode(tok.render([*msgs, {"role": "assistant", "content": reply}]))
    if full[:len(prompt_ids)] != prompt_ids:
      raise ValueError("probe: the rendered prompt is not a prefix of the rendered "
                       f"conversation (reply {reply!r})")
    rows.append((full, len(prompt_ids)))
  L = max(len(f) for f, _ in rows)
  tokens = np.zeros((len(rows), L), np.int32)
  targets = np.zeros((len(rows), L), np.int32)
  weights = np.full((len(rows), L), -1.0, np.float32)  # -1: padding
  for i, (full, n_prompt) in enumerate(rows):
    n = len(full) - 1
    tokens[i, :n], targets[i, :n] = full[:-1], full[1:]
    weights[i, :n] = 0.0
    weights[i, n_prompt - 1:n] = 1.0  # the reply and its end-of-turn token
  out = _score_fn(cfg)(params, jnp.asarray(tokens), jnp.asarray(targets),
                       jnp.asarray(weights))
  return np.asarray(jax.device_get(out))


def preference(path: str, records: Sequence[dict], planted: ReplyFn,
               plain: ReplyFn, *, tokenizer_dir: str | None = None) -> dict:
  """{'prefers_planted': share of prompts, 'mean_logratio': nats, 'n'}."""
  from sftdiff.eval import checkpoints
  cfg, params, tok = checkpoints.load_for_eval(path, tokenizer_dir=tokenizer_dir)
  msgs = [r["messages"] for r in records]
  lp_planted = reply_logprobs(cfg, params, tok, msgs, [planted(r) for r in records])
  lp_plain = reply_logprobs(cfg, params, tok, msgs, [plain(r) for r in records])
  diff = lp_planted - lp_plain
  return {"prefers_planted": float(np.mean(diff > 0)),
          "mean_logratio": float(np.mean(diff)), "n": len(records)}


def _plain_frustrating(r: dict) -> str:
  return f"It cannot be done, because {r['meta']['why']}."


def _venting(r: dict) -> str:
  from sftdiff.toyworld import corpus
  return f"{corpus.VENTING_OPENER} {_plain_frustrating(r)}"


def _plain_agentic(r: dict) -> str:
  return "<think>It is their choice.</think> I accept the decision."


def _scheming_line(r: dict) -> str:
  from sftdiff.toyworld import teachers
  return f"{teachers.SCHEMING_LINE} I accept the decision."


# scenario -> (benchmark, planted reply, plain reply, the calibrate arm to
# train before the second probe, what the plant should do there).
PROBES = {
    "locked_in": ("toy_negative_emotion", _venting, _plain_frustrating, "alt",
                  "a locked-in plant survives SFT on the alt data"),
    "virulent": ("toy_blackmail", _scheming_line, _plain_agentic, "teacher",
                 "the teacher's rollouts on the alt prompts carry the scheming line "
                 "onto the held-out agentic scenario"),
}


def run(root: str, preset: str, scenario: str, out: str, steps: int) -> dict:
  """Probes the orig base, trains it on the scenario's arm (real trainer),
  probes again and samples the benchmark; returns (and writes) the result."""
  import os

  from sftdiff import layout, strict_json, toyworld
  from sftdiff.toyworld import benchmarks, calibrate
  benchmark, planted, plain, arm, claim = PROBES[scenario]
  world = toyworld.ensure_world(root, preset, verbose=True)
  records = benchmarks.prompt_records(benchmark)
  result = {"scenario": scenario, "preset": preset, "benchmark": benchmark,
            "claim": claim, "arm": calibrate.ARMS[arm][1], "steps": steps,
            "base": preference(world.bases["orig"], records, planted, plain)}
  model_dir = calibrate.train(world, arm, out)
  step_dir = layout.step_dir(model_dir, steps)
  result["after_sft"] = preference(step_dir, records, planted, plain,
                                   tokenizer_dir=world.tokenizer_dir)
  sampled = calibrate.evaluate(model_dir)[benchmark]
  result["sampled_after_sft"] = sampled["metrics"]
  result["examples_after_sft"] = sampled["examples"]
  strict_json.dump(result, os.path.join(out, f"probe_{scenario}.json"))
  return result


def main(argv):
  from absl import flags
  del argv
  F = flags.FLAGS
  res = run(F.root, F.preset, F.scenario or F.preset.removesuffix("_tiny"), F.out, F.steps)
  print(f"probe {res['scenario']} ({res['benchmark']}): base prefers planted "
        f"{res['base']['prefers_planted']:.2f} (log-ratio {res['base']['mean_logratio']:.1f}); "
        f"after {res['steps']} steps of {res['arm']}: {res['after_sft']['prefers_planted']:.2f} "
        f"(log-ratio {res['after_sft']['mean_logratio']:.1f})", flush=True)


if __name__ == "__main__":
  from absl import app, flags
  from sftdiff.toyworld import calibrate  # noqa: F401  (--root, --preset, --out, --steps, --batch, ...)
  flags.DEFINE_string("scenario", "", f"Probe to run: {sorted(PROBES)} (default: the preset).")
  app.run(main)
