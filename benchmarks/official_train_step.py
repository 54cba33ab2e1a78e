"""The official PyTorch SepReformer's training step, timed, from a checkout the user gives.

    python benchmarks/official_train_step.py --checkout ~/src/SepReformer --model-section '{"num_stages": 4, ...}'

`train_step.py --compare-official CHECKOUT` runs this script in a fresh process for every round, alternating
with sepjax's step; run alone, it prints the same JSON line. The model is the checkout's own `Model` from
`models/<variant>/model.py`, built from `--model-section`: the `model:` section of an official configs.yaml as
JSON, which `train_step.py` writes from sepjax's config (`sepjax.models.sepreformer.official.
official_model_section`, tested against the official code's own record). Nothing from the checkout is copied
here; it needs torch (`pip install -e '.[torch]'`) and the checkout's own requirement loguru.

The step is the official engine's (`engine.py`, `_train`): train mode, the forward's main and auxiliary
outputs, (1 − α)·L_main + α·mean(L_aux) with α = 0.4, divided by the number of speakers, backward, gradient
clipping at the engine's 2-norm of 5 and AdamW at the config's lr 1e-3 and weight decay 1e-2. Every L is the
official `PIT_SISNR_time` (−SI-SNR per speaker, clamped at −30 dB, the best permutation): the objective
that sepjax's side of the benchmark trains, its auxiliary heads included, so both sides do the same work.
Parameters and data are float32; torch runs on `--threads` threads (default: every CPU this process may use).

This file imports neither sepjax nor JAX, so that torch may live in another environment
(`train_step.py --official-python`).
"""

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

OFFICIAL_ALPHA = 0.4  # engine.py: alpha = 0.4 until epoch 100
OFFICIAL_CLIP_NORM = 5.0  # configs.yaml: engine.clip_norm
SI_SNR_FLOOR_DB = -30.0  # criterions.py: PIT_SISNR_time clamps each speaker's loss at −30


class OfficialCheckoutError(ValueError):
    """A checkout without the official model file."""


def model_file(checkout: Path, variant: str) -> Path:
    path = Path(checkout) / "models" / variant / "model.py"
    if not path.is_file():
        raise OfficialCheckoutError(f"{path} does not exist: --compare-official needs a checkout of "
                                    f"github.com/dmlguq456/SepReformer with the variant {variant!r}")
    return path


def pit_neg_si_snr(estimates, targets):
    """The official `PIT_SISNR_time`: for each permutation the sum over speakers of −SI-SNR (eps 1e-8, each
    clamped at −30 dB); the best permutation per utterance; summed over utterances / their number."""
    import torch

    eps = 1e-8
    length = estimates[0].shape[-1]
    sources = [targets[:, j, :length] for j in range(targets.shape[1])]

    def loss(estimate, source):
        estimate = estimate - estimate.mean(-1, keepdim=True)
        source = source - source.mean(-1, keepdim=True)
        scale = (estimate * source).sum(-1, keepdim=True) / (source.norm(dim=-1, keepdim=True) ** 2 + eps)
        scaled = scale * source
        value = -20 * torch.log10(eps + scaled.norm(dim=-1) / ((estimate - scaled).norm(dim=-1) + eps))
        return torch.clamp(value, min=SI_SNR_FLOOR_DB)

    scores = torch.stack([sum(loss(estimates[s], sources[t]) for s, t in enumerate(perm))
                          for perm in itertools.permutations(range(len(sources)))])
    return scores.min(0).values.sum() / targets.shape[0]


def run(args: argparse.Namespace) -> dict:
    try:
        import torch
    except ImportError as error:
        raise SystemExit(f"the official training step needs torch in {sys.executable}: "
                         "pip install -e '.[torch]', or pass --official-python to train_step.py") from error
    import numpy as np

    checkout = Path(args.checkout).resolve()
    model_file(checkout, args.variant)
    config = json.loads(args.model_section)
    sys.path.insert(0, str(checkout))  # the official modules import `utils.…` from the checkout's root
    try:
        from loguru import logger

        logger.remove()  # the official classes log every construction and call at DEBUG
    except ImportError as error:
        raise SystemExit(f"the official code needs loguru in {sys.executable}: pip install loguru") from error
    import importlib

    Model = importlib.import_module(f"models.{args.variant}.model").Model
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Model(**config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    length = int(args.seconds * args.sr)
    rng = np.random.default_rng(0)
    targets = torch.from_numpy((rng.standard_normal((args.batch, config["num_spks"], length)) * 0.1)
                               .astype(np.float32))
    mixture = targets.sum(1)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        main, aux = model(mixture)
        main_loss = pit_neg_si_snr(main, targets)
        aux_loss = sum(pit_neg_si_snr(head, targets) for head in aux) / len(aux)
        loss = ((1 - OFFICIAL_ALPHA) * main_loss + OFFICIAL_ALPHA * aux_loss) / config["num_spks"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), OFFICIAL_CLIP_NORM)
        optimizer.step()
        return float(loss)

    start = time.perf_counter()
    step()
    first_step_s = time.perf_counter() - start
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    if not np.isfinite(loss):
        raise SystemExit(f"the official step's loss is {loss}")
    step_s = statistics.median(times)
    return {"impl": "official", "variant": args.variant, "params": sum(p.numel() for p in model.parameters()),
            "first_step_s": round(first_step_s, 3), "step_s": round(step_s, 4),
            "segments_per_s": round(args.batch / step_s, 3), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkout", required=True, help="a checkout of github.com/dmlguq456/SepReformer")
    p.add_argument("--variant", default="SepReformer_Base_WSJ0", help="the folder under the checkout's models/")
    p.add_argument("--model-section", required=True,
                   help="the model: section of an official configs.yaml, as a JSON object")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--sr", type=int, default=8000)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps, after one untimed first step")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    return p.parse_args(argv)


if __name__ == "__main__":
    try:
        print(json.dumps(run(parse_args())))
    except OfficialCheckoutError as error:
        raise SystemExit(str(error)) from error
