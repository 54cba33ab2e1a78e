"""Evaluation metrics in JAX: batched over leading axes, jit-compiled, runnable on any JAX device.

Signals are (..., channels, time); every metric reduces channels and time together.

- `sdr`: the MDX "new SDR", 10·log10((Σs² + δ) / (Σ(s − ŝ)² + δ)) over the whole track.
- `si_sdr`, `si_sdr_improvement`: scale-invariant SDR (channels flattened into time), and its gain
  over using the mixture as the estimate.
- `snr`: plain signal-to-noise ratio.
- `framewise_sdr` / `bss_sdr_v4`: museval's BSS-eval v4 SDR. With time-invariant distortion
  filters the v4 SDR of a frame reduces to 10·log10(Σs² / Σ(ŝ − s)²) (the filters only enter
  ISR/SIR/SAR); frames are full windows `hop` apart, a frame where any reference or estimate
  source is silent is NaN, and the track score is the median over frames.
- `stft_l1`: mean absolute difference of STFT magnitudes.
- `bleedless_fullness`: MSST's mel-dB metrics: positive (bleed) and negative (missing) differences
  of 80 dB-floored mel spectrograms, each mapped through 100 / (x + 1).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from sepjax import losses
from sepjax.framing import frame
from sepjax.stft import magnitude, mel_filterbank, stft

MDX_DELTA = 1e-7


@jax.jit
def sdr(estimate: Float[Array, "*lead channels time"], reference: Float[Array, "*lead channels time"]
        ) -> Float[Array, "*lead"]:
    num = jnp.sum(jnp.square(reference), axis=(-2, -1)) + MDX_DELTA
    den = jnp.sum(jnp.square(reference - estimate), axis=(-2, -1)) + MDX_DELTA
    return 10.0 * jnp.log10(num / den)


def _flat(x: Float[Array, "*lead channels time"]) -> Float[Array, "*lead samples"]:
    return x.reshape(*x.shape[:-2], -1)


@jax.jit
def si_sdr(estimate: Float[Array, "*lead channels time"], reference: Float[Array, "*lead channels time"]
           ) -> Float[Array, "*lead"]:
    return losses.si_sdr(_flat(estimate), _flat(reference))


@jax.jit
def si_sdr_improvement(estimate: Float[Array, "*lead channels time"], reference: Float[Array, "*lead channels time"],
                       mixture: Float[Array, "*mix_lead channels time"]) -> Float[Array, "*lead"]:
    return si_sdr(estimate, reference) - si_sdr(jnp.broadcast_to(mixture, reference.shape), reference)


@jax.jit
def snr(estimate: Float[Array, "*lead channels time"], reference: Float[Array, "*lead channels time"]
        ) -> Float[Array, "*lead"]:
    return losses.snr(_flat(estimate), _flat(reference))


@partial(jax.jit, static_argnames=("window", "hop"))
def framewise_sdr(estimates: Float[Array, "*lead sources channels time"],
                  references: Float[Array, "*lead sources channels time"], window: int, hop: int
                  ) -> Float[Array, "*lead sources frames"]:
    """museval v4 SDR per frame (NaN where any source of the reference or estimate is silent)."""
    length = references.shape[-1]
    window = min(window, length)
    ref_frames = frame(references, window, hop)  # (..., S, C, F, W)
    est_frames = frame(estimates, window, hop)
    num = jnp.sum(jnp.square(ref_frames), axis=(-3, -1))
    den = jnp.sum(jnp.square(est_frames - ref_frames), axis=(-3, -1))
    values = jnp.where(den == 0, jnp.inf, 10.0 * jnp.log10(num / jnp.where(den == 0, 1.0, den)))

    def silent(frames):  # museval: every per-sample channel sum is exactly zero
        return jnp.all(jnp.sum(frames, axis=-3) == 0, axis=-1)  # (..., S, F)

    any_silent = jnp.any(silent(ref_frames), axis=-2) | jnp.any(silent(est_frames), axis=-2)
    return jnp.where(any_silent[..., None, :], jnp.nan, values)


def bss_sdr_v4(estimates: Float[Array, "*lead sources channels time"],
               references: Float[Array, "*lead sources channels time"], sample_rate: int,
               window_seconds: float = 1.0, hop_seconds: float = 1.0) -> Float[Array, "*lead sources"]:
    """The track-level museval v4 SDR: the median over frames of `framewise_sdr`, NaN frames ignored."""
    frames = framewise_sdr(estimates, references, int(window_seconds * sample_rate), int(hop_seconds * sample_rate))
    return jnp.nanmedian(frames, axis=-1)


@partial(jax.jit, static_argnames=("n_fft", "hop"))
def stft_l1(estimate: Float[Array, "*lead channels time"], reference: Float[Array, "*lead channels time"],
            n_fft: int = 2048, hop: int = 512) -> Float[Array, "*lead"]:
    diff = magnitude(stft(estimate, n_fft, hop), floor=0.0) - magnitude(stft(reference, n_fft, hop), floor=0.0)
    return jnp.mean(jnp.abs(diff), axis=(-3, -2, -1))


def _mel_db(x: Float[Array, "*lead channels time"], fb: np.ndarray, n_fft: int, hop: int, top_db: float
            ) -> Float[Array, "*lead channels mels frames"]:
    mag = magnitude(stft(x, n_fft, hop, pad_mode="constant"), floor=0.0)
    mel = jnp.einsum("mf,...ft->...mt", jnp.asarray(fb), mag)
    db = 20.0 * jnp.log10(jnp.maximum(mel, 1e-10))
    peak = jnp.max(db, axis=(-3, -2, -1), keepdims=True)
    return jnp.maximum(db, peak - top_db)


@partial(jax.jit, static_argnames=("sample_rate", "n_fft", "hop", "n_mels"))
def bleedless_fullness(estimate: Float[Array, "*lead channels time"], reference: Float[Array, "*lead channels time"],
                       sample_rate: int, n_fft: int = 4096, hop: int = 1024, n_mels: int = 512
                       ) -> tuple[Float[Array, "*lead"], Float[Array, "*lead"]]:
    fb = mel_filterbank(sample_rate, n_fft, n_mels)
    diff = _mel_db(estimate, fb, n_fft, hop, 80.0) - _mel_db(reference, fb, n_fft, hop, 80.0)
    axes = (-3, -2, -1)
    pos, neg = diff > 0, diff < 0
    count_pos = jnp.maximum(jnp.sum(pos, axis=axes, dtype=diff.dtype), 1.0)
    count_neg = jnp.maximum(jnp.sum(neg, axis=axes, dtype=diff.dtype), 1.0)
    mean_pos = jnp.sum(jnp.where(pos, diff, 0.0), axis=axes) / count_pos
    mean_neg = jnp.sum(jnp.where(neg, diff, 0.0), axis=axes) / count_neg
    return 100.0 / (mean_pos + 1.0), 100.0 / (1.0 - mean_neg)


def best_order(estimates: np.ndarray, references: np.ndarray) -> np.ndarray:
    """The permutation `p` of the estimates (stems, channels, T) that maximises the mean SI-SDR of estimates[p]
    against the references: speakers have no order, so a speech separator is scored in its best one."""
    count = len(estimates)
    shape = (count, *estimates.shape)
    pairs = np.asarray(si_sdr(jnp.broadcast_to(jnp.asarray(estimates)[:, None], shape),
                              jnp.broadcast_to(jnp.asarray(references)[None], shape)))  # [estimate, reference]
    table = losses.permutations(count)
    return table[np.argmax(pairs[table, np.arange(count)].mean(axis=-1))]


METRIC_NAMES = ("sdr", "bss_sdr_v4", "si_sdr", "si_sdri", "snr", "stft_l1", "bleedless", "fullness")


def track_metrics(estimates: np.ndarray, references: np.ndarray, mixture: np.ndarray, sample_rate: int
                  ) -> dict[str, np.ndarray]:
    """Every metric for one track: estimates/references (stems, channels, T), mixture (channels, T) → (stems,)."""
    est, ref, mix = jnp.asarray(estimates), jnp.asarray(references), jnp.asarray(mixture)
    bleed, full = bleedless_fullness(est, ref, sample_rate)
    values = {
        "sdr": sdr(est, ref), "bss_sdr_v4": bss_sdr_v4(est, ref, sample_rate), "si_sdr": si_sdr(est, ref),
        "si_sdri": si_sdr_improvement(est, ref, mix), "snr": snr(est, ref), "stft_l1": stft_l1(est, ref),
        "bleedless": bleed, "fullness": full,
    }
    return {k: np.asarray(v, np.float64) for k, v in values.items()}


def aggregate(rows: list[dict], metrics: tuple[str, ...] = METRIC_NAMES) -> dict[str, dict[str, dict[str, float]]]:
    """Per stem and metric: mean and median across tracks (NaN-ignoring), and the track count."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for stem in sorted({r["stem"] for r in rows}):
        stem_rows = [r for r in rows if r["stem"] == stem]
        out[stem] = {}
        for m in metrics:
            vals = np.array([r[m] for r in stem_rows], np.float64)
            finite = vals[np.isfinite(vals)]
            out[stem][m] = {"mean": float(finite.mean()) if finite.size else float("nan"),
                            "median": float(np.median(finite)) if finite.size else float("nan"),
                            "tracks": int(finite.size)}
    return out
