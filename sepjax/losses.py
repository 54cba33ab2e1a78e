"""Separation losses: pure, batched over leading axes, jit-safe, finite for every input.

Shapes: waveforms are (..., time); stem-level losses take estimates and targets of shape
(batch, stems, channels, time) and an optional validity mask (batch, stems).

Silent targets. SI-SDR is undefined when a target is silent (a missing JaCappella part, or a
stem switched off by subset mixing). A stem whose target energy E_s is at or below
`silence_db` dB relative to the mixture energy E_x (or below an absolute floor) is scored
instead by a bounded energy penalty on its estimate ŝ:

    P(ŝ) = 10·log10(τ + E_ŝ / (E_ŝ + E_x + ε)),   τ = 10^(−max_silent_db/10)

P lies in [−max_silent_db, 10·log10(1 + τ)] dB (−30 dB to ≈0 dB by default): it is lowest when
the estimate is silent, cannot run to −∞ as −SI-SDR would, and is on the same dB scale as
−SI-SDR so the two average together. The MR-STFT term is skipped for silent stems.
"""

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Shaped

from sepjax.stft import magnitude, stft

EPS = 1e-8
DEFAULT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))
AuxLoss = Literal["main", "stft_magnitude_si_snr"]


def _energy(x: Float[Array, "*lead time"]) -> Float[Array, "*lead"]:
    return jnp.sum(jnp.square(x), axis=-1)


def si_sdr(estimate: Float[Array, "*lead time"], target: Float[Array, "*lead time"],
           eps: float = EPS) -> Float[Array, "*lead"]:
    """Scale-invariant SDR in dB after removing each signal's mean."""
    estimate = estimate - jnp.mean(estimate, axis=-1, keepdims=True)
    target = target - jnp.mean(target, axis=-1, keepdims=True)
    scale = jnp.sum(estimate * target, axis=-1, keepdims=True) / (_energy(target)[..., None] + eps)
    projection = scale * target
    return 10.0 * jnp.log10((_energy(projection) + eps) / (_energy(estimate - projection) + eps))


def snr(estimate: Float[Array, "*lead time"], target: Float[Array, "*lead time"],
        eps: float = EPS) -> Float[Array, "*lead"]:
    """Plain signal-to-noise ratio in dB: ‖s‖² / ‖s − ŝ‖²."""
    return 10.0 * jnp.log10((_energy(target) + eps) / (_energy(target - estimate) + eps))


def stft_loss(estimate: Float[Array, "*lead time"], target: Float[Array, "*lead time"],
              n_fft: int, hop: int) -> Float[Array, "*lead"]:
    """Spectral convergence plus mean absolute log-magnitude distance at one resolution."""
    est_mag = magnitude(stft(estimate, n_fft, hop))
    tgt_mag = jax.lax.stop_gradient(magnitude(stft(target, n_fft, hop)))
    diff = jnp.sqrt(jnp.sum(jnp.square(tgt_mag - est_mag), axis=(-2, -1)) + EPS)
    norm = jnp.sqrt(jnp.sum(jnp.square(tgt_mag), axis=(-2, -1)) + EPS)
    log_distance = jnp.mean(jnp.abs(jnp.log(tgt_mag) - jnp.log(est_mag)), axis=(-2, -1))
    return diff / norm + log_distance


def mr_stft_loss(estimate: Float[Array, "*lead time"], target: Float[Array, "*lead time"],
                 resolutions: tuple[tuple[int, int], ...] = DEFAULT_RESOLUTIONS) -> Float[Array, "*lead"]:
    """Multi-resolution STFT loss: the mean of `stft_loss` over (n_fft, hop) pairs, Hann window."""
    return sum(stft_loss(estimate, target, n, h) for n, h in resolutions) / len(resolutions)


def official_stft_magnitude(x: Float[Array, "*lead time"], n_fft: int, hop: int) -> Float[Array, "*lead freqs frames"]:
    """The official SepReformer's STFT magnitude: zero-padded on the right to whole hops, no centring, a periodic
    Hann window, scaled by √(2/3) (for hop = n_fft/4) over ½·n_fft/√hop; √(re² + im² + 1e-10)."""
    length = -(-x.shape[-1] // hop) * hop
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, length - x.shape[-1])])
    gain = (2.0 / 3.0) ** 0.5 if hop == n_fft // 4 else 1.0
    spec = stft(x, n_fft, hop, center=False) * (gain / (0.5 * n_fft / hop**0.5))
    return jnp.sqrt(jnp.real(spec) ** 2 + jnp.imag(spec) ** 2 + 1e-10)


def stft_magnitude_si_snr(estimate: Float[Array, "*lead time"], target: Float[Array, "*lead time"],
                          n_fft: int = 512, hop: int = 128, min_scale: float = 1e-2, eps: float = 1e-12
                          ) -> Float[Array, "*lead"]:
    """The paper's auxiliary objective, in dB: SI-SNR between STFT magnitudes.

    Both signals lose their mean; the target is scaled by max(⟨ŝ, s⟩/‖s‖², min_scale) (the clamp keeps an
    anti-correlated estimate from zeroing the target); then 20·log10(ε + ‖|S|‖ / (‖|Ŝ| − |S|‖ + ε)) with
    `official_stft_magnitude` and Frobenius norms. Unlike the time-domain loss it is not capped.
    """
    estimate = estimate - jnp.mean(estimate, axis=-1, keepdims=True)
    target = target - jnp.mean(target, axis=-1, keepdims=True)
    scale = jnp.sum(estimate * target, axis=-1, keepdims=True) / (_energy(target)[..., None] + eps)
    target = jnp.maximum(scale, min_scale) * target
    est_mag = official_stft_magnitude(estimate, n_fft, hop)
    tgt_mag = official_stft_magnitude(target, n_fft, hop)
    signal = jnp.sqrt(jnp.sum(jnp.square(tgt_mag), axis=(-2, -1)))
    error = jnp.sqrt(jnp.sum(jnp.square(est_mag - tgt_mag), axis=(-2, -1)))
    return 20.0 * jnp.log10(eps + signal / (error + eps))


def silent_penalty(estimate: Float[Array, "*lead time"], reference_energy: Float[Array, "*lead"],
                   max_silent_db: float = 30.0) -> Float[Array, "*lead"]:
    """Bounded energy penalty for an estimate whose target is silent (formula in the module doc)."""
    tau = 10.0 ** (-max_silent_db / 10.0)
    est_energy = _energy(estimate)
    return 10.0 * jnp.log10(tau + est_energy / (est_energy + reference_energy + EPS))


@dataclass(frozen=True)
class CompositeLossConfig:
    """−SI-SDR + stft_weight·MR-STFT per active stem; the silent-stem penalty elsewhere."""

    stft_weight: float = 0.5
    resolutions: tuple[tuple[int, int], ...] = DEFAULT_RESOLUTIONS
    silence_db: float = -60.0
    silence_floor: float = 1e-8
    max_silent_db: float = 30.0
    permutation_invariant: bool = False
    """Match estimates to targets by the best permutation (−SI-SDR) first: speech-style unordered stems."""
    si_sdr_cap_db: float | None = None
    """Per-stem SI-SDR above this counts as this in the loss (the paper's −SI-SNR clamped at −30 dB)."""
    aux_weight: float = 0.4
    """α in (1−α)·L_main + α·mean(L_aux), for models with auxiliary (multi-loss) outputs."""
    aux_decay_start: int | None = None
    """Step after which α decays (the paper: epoch 100); None keeps α constant."""
    aux_decay_every: int = 1000
    aux_decay: float = 0.8
    """α ← α·aux_decay at aux_decay_start and every aux_decay_every steps after it."""
    aux_loss: AuxLoss = "main"
    """The auxiliary heads' loss. 'main': the main loss above. 'stft_magnitude_si_snr': the paper's (the official
    code's `PIT_SISNR_mag`), −`stft_magnitude_si_snr` at `aux_stft`, with the same permutation rule and
    silent-stem penalty as the main loss."""
    aux_stft: tuple[int, int] = (512, 128)
    """(n_fft, hop) of the 'stft_magnitude_si_snr' auxiliary loss."""

    def __post_init__(self):
        if self.aux_loss not in ("main", "stft_magnitude_si_snr"):
            raise ValueError(f"aux_loss {self.aux_loss!r} must be 'main' or 'stft_magnitude_si_snr'")


def is_silent(targets: Float[Array, "*batch stems channels time"], config: CompositeLossConfig
              ) -> Bool[Array, "*batch stems"]:
    """Targets at or below `silence_db` relative to their mixture, or below an absolute floor."""
    energy = jnp.sum(jnp.square(targets), axis=(-2, -1))
    mixture_energy = jnp.sum(jnp.square(jnp.sum(targets, axis=-3)), axis=(-2, -1))
    mean_power = energy / (targets.shape[-2] * targets.shape[-1])
    relative = energy <= 10.0 ** (config.silence_db / 10.0) * mixture_energy[..., None]
    return relative | (mean_power <= config.silence_floor)


def stem_losses(estimates: Float[Array, "*batch stems channels time"],
                targets: Float[Array, "*batch stems channels time"],
                config: CompositeLossConfig = CompositeLossConfig()) -> dict[str, Array]:
    """Per-stem loss terms, each of shape (*batch, stems), averaged over channels.

    With `stft_weight == 0` the MR-STFT is not computed and its term is absent.
    """
    silent = is_silent(targets, config)
    mixture_energy = jnp.sum(jnp.square(jnp.sum(targets, axis=-3)), axis=(-2, -1))
    neg_si_sdr = -jnp.mean(si_sdr(estimates, targets), axis=-1)
    flat_estimates = estimates.reshape(*estimates.shape[:-2], -1)
    reference = jnp.broadcast_to(mixture_energy[..., None], silent.shape)
    penalty = silent_penalty(flat_estimates, reference, config.max_silent_db)
    capped = neg_si_sdr if config.si_sdr_cap_db is None else jnp.maximum(neg_si_sdr, -config.si_sdr_cap_db)
    terms = {"neg_si_sdr": neg_si_sdr, "silent_penalty": penalty, "silent": silent}
    active = capped
    if config.stft_weight:
        terms["mr_stft"] = jnp.mean(mr_stft_loss(estimates, targets, config.resolutions), axis=-1)
        active = capped + config.stft_weight * terms["mr_stft"]
    return {"loss": jnp.where(silent, penalty, active), **terms}


def masked_mean(values: Float[Array, "batch stems"], mask: Shaped[Array, "batch stems"] | None
                ) -> Float[Array, ""]:
    """Mean over valid stems of each example, then over examples that have any valid stem."""
    if mask is None:
        return jnp.mean(values)
    mask = mask.astype(values.dtype)
    valid = jnp.sum(mask, axis=-1)
    per_example = jnp.sum(jnp.where(mask > 0, values, 0.0), axis=-1) / jnp.maximum(valid, 1.0)
    has_any = (valid > 0).astype(values.dtype)
    return jnp.sum(per_example * has_any) / jnp.maximum(jnp.sum(has_any), 1.0)


def composite_loss(estimates: Float[Array, "batch stems channels time"],
                   targets: Float[Array, "batch stems channels time"],
                   mask: Float[Array, "batch stems"] | None = None,
                   config: CompositeLossConfig = CompositeLossConfig()
                   ) -> tuple[Float[Array, ""], dict[str, Array]]:
    """The training objective and its terms (each term averaged the same way, over valid stems)."""
    if config.permutation_invariant:
        estimates = best_permutation(estimates, targets)
    terms = stem_losses(estimates, targets, config)
    active_mask = ~terms["silent"]
    if mask is not None:
        active_mask = active_mask & (mask > 0)
    summary = {name: masked_mean(terms[name], active_mask) for name in ("neg_si_sdr", "mr_stft") if name in terms}
    summary["silent_fraction"] = masked_mean(terms["silent"].astype(estimates.dtype), mask)
    return masked_mean(terms["loss"], mask), summary


def aux_loss_weight(step: Int[Array, ""] | int, config: CompositeLossConfig) -> Float[Array, ""]:
    """α at `step`: aux_weight, then ×aux_decay at aux_decay_start and every aux_decay_every steps after."""
    alpha = jnp.asarray(config.aux_weight, jnp.float32)
    if config.aux_decay_start is None:
        return alpha
    past = jnp.asarray(step, jnp.int32) - config.aux_decay_start
    decays = jnp.where(past >= 0, 1 + jnp.maximum(past, 0) // config.aux_decay_every, 0)
    return alpha * jnp.asarray(config.aux_decay, jnp.float32) ** decays.astype(jnp.float32)


def multi_loss(estimates: Float[Array, "batch stems channels time"],
               aux_estimates: Float[Array, "batch heads stems channels time"] | None,
               targets: Float[Array, "batch stems channels time"], mask: Float[Array, "batch stems"] | None,
               config: CompositeLossConfig, aux_weight: Float[Array, ""] | float
               ) -> tuple[Float[Array, ""], dict[str, Array]]:
    """(1−α)·L_main + α·mean over heads of L_aux; each L is `composite_loss`. Without heads, L_main alone."""
    loss, terms = composite_loss(estimates, targets, mask, config)
    if aux_estimates is None:
        return loss, terms
    heads = [aux_head_loss(aux_estimates[:, h], targets, mask, config) for h in range(aux_estimates.shape[1])]
    aux = sum(heads) / len(heads)
    return (1 - aux_weight) * loss + aux_weight * aux, {**terms, "main_loss": loss, "aux_loss": aux,
                                                        "aux_weight": jnp.asarray(aux_weight, loss.dtype)}


def aux_head_loss(estimates: Float[Array, "batch stems channels time"],
                  targets: Float[Array, "batch stems channels time"], mask: Float[Array, "batch stems"] | None,
                  config: CompositeLossConfig) -> Float[Array, ""]:
    """One auxiliary head's loss under `config.aux_loss`."""
    if config.aux_loss == "main":
        return composite_loss(estimates, targets, mask, config)[0]
    n_fft, hop = config.aux_stft

    def pair(e, t):
        return -jnp.mean(stft_magnitude_si_snr(e, t, n_fft, hop))

    if config.permutation_invariant:
        estimates = best_permutation(estimates, targets, pair)
    values = jax.vmap(jax.vmap(pair))(estimates, targets)
    silent = is_silent(targets, config)
    mixture_energy = jnp.sum(jnp.square(jnp.sum(targets, axis=-3)), axis=(-2, -1))
    penalty = silent_penalty(estimates.reshape(*estimates.shape[:-2], -1),
                             jnp.broadcast_to(mixture_energy[..., None], silent.shape), config.max_silent_db)
    return masked_mean(jnp.where(silent, penalty, values), mask)


def _negative_si_sdr(estimate: Float[Array, "*rest"], target: Float[Array, "*rest"]) -> Float[Array, ""]:
    return -jnp.mean(si_sdr(estimate, target))


def best_permutation(estimates: Float[Array, "batch stems *rest"], targets: Float[Array, "batch stems *rest"],
                     pair_loss=_negative_si_sdr) -> Float[Array, "batch stems *rest"]:
    """Reorder each example's estimates to the permutation that minimises the mean `pair_loss` (−SI-SDR)."""
    _, perm = pit(pair_loss, jax.lax.stop_gradient(estimates), targets)
    return jnp.take_along_axis(estimates, perm.reshape(*perm.shape, *([1] * (estimates.ndim - 2))), axis=1)


def permutations(count: int) -> Int[np.ndarray, "perms count"]:
    """Every ordering of `count` outputs, as a (count!, count) integer table."""
    if count > 8:
        raise ValueError(f"PIT over {count} outputs means {math.factorial(count)} permutations")
    return np.array(list(itertools.permutations(range(count))), dtype=np.int32)


def pit(pair_loss, estimates: Float[Array, "batch stems *rest"], targets: Float[Array, "batch stems *rest"]
        ) -> tuple[Float[Array, " batch"], Int[Array, "batch stems"]]:
    """Permutation-invariant loss: the best assignment of estimates to targets per example.

    `pair_loss(estimate, target)` maps one (*rest) pair to a scalar. Returns the minimum mean
    loss per example and the permutation `p` attaining it (estimate p[j] is matched to target j).
    """
    num = estimates.shape[1]
    table = jnp.asarray(permutations(num))
    matrix = jax.vmap(jax.vmap(jax.vmap(pair_loss, (None, 0)), (0, None)))(estimates, targets)
    costs = jnp.mean(matrix[:, table, jnp.arange(num)], axis=-1)
    best = jnp.argmin(costs, axis=-1)
    return jnp.min(costs, axis=-1), table[best]
