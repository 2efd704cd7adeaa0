"""RECAP baseline (advantage-conditioned policy, as in pi*0.6): a value model labels every step's
advantage, the policy is behaviour-cloned on *all* data with the label in its instruction, and
deployed conditioned on "positive".

- Advantage of the chunk starting at t: A_t = R_t + discount_t (1 - done_t) V(s_{t+nH}) - V(s_t),
  the replay's own n-step return and bootstrap (the "lookahead" of the value model; discount_t is
  gamma^(nH), shorter at the end of a truncated episode).
- Per task, the top `positive_fraction` (30%) of advantages are positive; every chunk of an
  autonomous rollout that holds a teleoperated step (an intervention) is positive (demonstrations
  and play data are teleoperated throughout: they are labelled by advantage like the rest).
- The label enters through the instruction, the way pi*0.6 writes "Advantage: positive" into its
  prompt: each instruction gets a positive and a negative variant in the vocabulary. The critic
  keeps seeing the plain instruction (its values must not depend on the label).
- The exported policy maps each plain instruction to its positive variant, so robots need nothing new.
"""

from __future__ import annotations

import numpy as np

POSITIVE = "\n<advantage: positive>"
NEGATIVE = "\n<advantage: negative>"


def conditioned(instruction: str, positive: bool) -> str:
    return instruction + (POSITIVE if positive else NEGATIVE)


def advantage_labels(
    values: np.ndarray,
    next_values: np.ndarray,
    ret: np.ndarray,
    done: np.ndarray,
    discount: float | np.ndarray,
    task_id: np.ndarray,
    intervention: np.ndarray,
    positive_fraction: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """(advantages [N], positive [N] bool) for N steps; thresholds per task."""
    adv = ret + discount * (1.0 - done) * next_values - values
    positive = intervention > 0
    for t in np.unique(task_id):
        sel = task_id == t
        positive[sel] |= adv[sel] >= np.quantile(adv[sel], 1.0 - positive_fraction)
    return adv, positive


def deployed_instructions(items: list[str]) -> list[str]:
    """The instruction list an exported RECAP policy carries: each positive variant's row answers
    to the plain instruction; plain and negative rows get names no robot sends."""
    out = []
    for s in items:
        if s.endswith(POSITIVE):
            out.append(s[: -len(POSITIVE)])
        else:
            out.append(f"<recap-unused>{s}")
    return out
