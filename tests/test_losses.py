"""Losses against hand-written NumPy references and invariants."""

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from sepjax.losses import (
    CompositeLossConfig,
    composite_loss,
    is_silent,
    mr_stft_loss,
    pit,
    si_sdr,
    silent_penalty,
    snr,
    stft_loss,
)


def numpy_si_sdr(est, tgt):
    est, tgt = est - est.mean(), tgt - tgt.mean()
    proj = (est @ tgt) / (tgt @ tgt) * tgt
    return 10 * np.log10((proj @ proj) / ((est - proj) @ (est - proj)))


def test_si_sdr_matches_numpy_reference():
    rng = np.random.default_rng(0)
    tgt = rng.standard_normal((3, 1000)).astype(np.float32)
    est = (tgt + 0.3 * rng.standard_normal((3, 1000))).astype(np.float32)
    expected = [numpy_si_sdr(est[i].astype(np.float64), tgt[i].astype(np.float64)) for i in range(3)]
    np.testing.assert_allclose(si_sdr(jnp.asarray(est), jnp.asarray(tgt)), expected, atol=1e-3)


def test_si_sdr_is_scale_and_offset_invariant():
    rng = np.random.default_rng(1)
    tgt = jnp.asarray(rng.standard_normal(2000), dtype=jnp.float32)
    est = tgt + 0.2 * jnp.asarray(rng.standard_normal(2000), dtype=jnp.float32)
    base = si_sdr(est, tgt)
    np.testing.assert_allclose(si_sdr(7.5 * est, tgt), base, atol=1e-3)
    np.testing.assert_allclose(si_sdr(0.01 * est + 3.0, tgt), base, atol=1e-3)


def test_known_snr_gives_known_value():
    rng = np.random.default_rng(2)
    tgt = rng.standard_normal(8000)
    noise = rng.standard_normal(8000)
    noise -= noise.mean()
    tgt -= tgt.mean()
    noise -= (noise @ tgt) / (tgt @ tgt) * tgt  # orthogonal, so SI-SDR equals SNR exactly
    noise *= np.sqrt((tgt @ tgt) / (noise @ noise) / 10 ** (12.0 / 10))
    est = jnp.asarray(tgt + noise, dtype=jnp.float32)
    tgt = jnp.asarray(tgt, dtype=jnp.float32)
    np.testing.assert_allclose(snr(est, tgt), 12.0, atol=1e-3)
    np.testing.assert_allclose(si_sdr(est, tgt), 12.0, atol=1e-3)


def test_stft_loss_matches_numpy_with_librosa_stft():
    rng = np.random.default_rng(3)
    tgt = rng.standard_normal(4000).astype(np.float32)
    est = (tgt + 0.5 * rng.standard_normal(4000)).astype(np.float32)
    t = np.maximum(np.abs(librosa.stft(tgt, n_fft=512, hop_length=128, pad_mode="reflect")), 1e-7)
    e = np.maximum(np.abs(librosa.stft(est, n_fft=512, hop_length=128, pad_mode="reflect")), 1e-7)
    expected = np.linalg.norm(t - e) / np.linalg.norm(t) + np.mean(np.abs(np.log(t) - np.log(e)))
    np.testing.assert_allclose(stft_loss(jnp.asarray(est), jnp.asarray(tgt), 512, 128), expected, rtol=1e-4)
    assert float(mr_stft_loss(jnp.asarray(tgt), jnp.asarray(tgt))) == pytest.approx(0.0, abs=1e-3)


def test_pit_recovers_the_true_permutation():
    rng = np.random.default_rng(4)
    targets = jnp.asarray(rng.standard_normal((3, 4, 500)), dtype=jnp.float32)
    perms = [np.array([2, 0, 3, 1]), np.array([0, 1, 2, 3]), np.array([3, 2, 1, 0])]
    estimates = jnp.stack([targets[i][p] for i, p in enumerate(perms)])
    estimates = estimates + 0.05 * jnp.asarray(rng.standard_normal(estimates.shape), dtype=jnp.float32)
    loss, found = pit(lambda e, t: -si_sdr(e, t), estimates, targets)
    for i, p in enumerate(perms):
        # estimate found[j] is matched to target j, so p[found[j]] == j.
        np.testing.assert_array_equal(p[np.asarray(found[i])], np.arange(4))
    assert bool(jnp.all(loss < -20))


def test_silent_penalty_is_bounded_and_prefers_silence():
    reference = jnp.asarray(100.0)
    silent = silent_penalty(jnp.zeros(100), reference)
    loud = silent_penalty(jnp.full(100, 1e6), reference)
    np.testing.assert_allclose(silent, -30.0, atol=1e-4)
    assert float(loud) <= 10 * np.log10(1 + 1e-3) + 1e-5
    assert float(silent) < float(silent_penalty(jnp.full(100, 0.5), reference)) < float(loud)


def batch(rng, b=2, n=3, c=1, t=4096):
    targets = jnp.asarray(rng.standard_normal((b, n, c, t)) * 0.1, dtype=jnp.float32)
    return targets


@pytest.mark.parametrize("case", ["zeros", "silent_target", "silent_everything_but_one", "huge"])
def test_composite_loss_and_gradients_are_finite(case):
    rng = np.random.default_rng(5)
    targets = batch(rng)
    estimates = jnp.asarray(rng.standard_normal(targets.shape), dtype=jnp.float32)
    if case == "zeros":
        targets, estimates = jnp.zeros_like(targets), jnp.zeros_like(targets)
    elif case == "silent_target":
        targets = targets.at[:, 1].set(0.0)
    elif case == "silent_everything_but_one":
        targets = targets.at[:, 1:].set(0.0)
        estimates = estimates.at[:, 0].set(0.0)
    else:
        estimates = estimates * 1e6
    loss, terms = composite_loss(estimates, targets)
    grads = jax.grad(lambda e: composite_loss(e, targets)[0])(estimates)
    assert bool(jnp.isfinite(loss)) and all(bool(jnp.isfinite(v)) for v in terms.values())
    assert bool(jnp.all(jnp.isfinite(grads)))


def test_silent_stems_use_the_penalty_and_silent_estimates_score_best():
    rng = np.random.default_rng(6)
    targets = batch(rng).at[:, 2].set(0.0)
    assert np.asarray(is_silent(targets, CompositeLossConfig())).tolist() == [[False, False, True]] * 2
    noisy = targets + 0.01 * jnp.asarray(rng.standard_normal(targets.shape), dtype=jnp.float32)
    quiet = noisy.at[:, 2].set(0.0)
    assert float(composite_loss(quiet, targets)[0]) < float(composite_loss(noisy, targets)[0])


def test_mask_excludes_stems_from_the_loss():
    rng = np.random.default_rng(7)
    targets = batch(rng)
    estimates = targets + 0.1 * jnp.asarray(rng.standard_normal(targets.shape), dtype=jnp.float32)
    mask = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    garbage = estimates.at[:, 2].set(123.0)
    np.testing.assert_allclose(composite_loss(estimates, targets, mask)[0],
                               composite_loss(garbage, targets, mask)[0], rtol=1e-4)
    full = composite_loss(estimates[:, :2], targets[:, :2])[0]
    np.testing.assert_allclose(composite_loss(estimates, targets, mask)[0], full, rtol=1e-4)
    assert bool(jnp.isfinite(composite_loss(estimates, targets, jnp.zeros((2, 3)))[0]))


def test_composite_is_minus_si_sdr_plus_half_mr_stft():
    rng = np.random.default_rng(8)
    targets = batch(rng, b=1, n=2)
    estimates = targets + 0.2 * jnp.asarray(rng.standard_normal(targets.shape), dtype=jnp.float32)
    expected = np.mean([-float(si_sdr(estimates[0, n, 0], targets[0, n, 0]))
                        + 0.5 * float(mr_stft_loss(estimates[0, n, 0], targets[0, n, 0])) for n in range(2)])
    np.testing.assert_allclose(composite_loss(estimates, targets)[0], expected, rtol=1e-5)


def test_losses_jit():
    rng = np.random.default_rng(9)
    targets = batch(rng)
    jitted = jax.jit(lambda e, t: composite_loss(e, t)[0])
    np.testing.assert_allclose(jitted(targets * 0.9, targets), composite_loss(targets * 0.9, targets)[0],
                               rtol=1e-4)


def test_permutation_invariant_loss_ignores_output_order():
    rng = np.random.default_rng(10)
    targets = batch(rng, b=2, n=2)
    estimates = targets + 0.05 * jnp.asarray(rng.standard_normal(targets.shape), dtype=jnp.float32)
    swapped = estimates[:, ::-1]
    config = CompositeLossConfig(permutation_invariant=True)
    np.testing.assert_allclose(composite_loss(swapped, targets, config=config)[0],
                               composite_loss(estimates, targets, config=config)[0], rtol=1e-5)
    assert float(composite_loss(swapped, targets)[0]) > float(composite_loss(estimates, targets)[0]) + 20


def numpy_official_magnitude_si_snr(est, tgt, n_fft=512, hop=128, eps=1e-12):
    """The official `PIT_SISNR_mag` for one pair, written from its definition in float64: zero-mean, target
    scaled by max(⟨ŝ,s⟩/‖s‖², 0.01), right-padded to whole hops, frames without centring, periodic Hann·√(2/3)
    over ½·n_fft/√hop, |X| = √(re² + im² + 1e-10), Frobenius norms."""
    est, tgt = est - est.mean(), tgt - tgt.mean()
    tgt = max((est @ tgt) / (tgt @ tgt + eps), 1e-2) * tgt
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)) * (2 / 3) ** 0.5 / (0.5 * n_fft / hop**0.5)

    def magnitude(x):
        x = np.pad(x, (0, -(-len(x) // hop) * hop - len(x)))
        frames = np.stack([x[i : i + n_fft] for i in range(0, len(x) - n_fft + 1, hop)])
        spec = np.fft.rfft(frames * window, axis=-1)
        return np.sqrt(spec.real**2 + spec.imag**2 + 1e-10)

    signal, error = np.linalg.norm(magnitude(tgt)), np.linalg.norm(magnitude(est) - magnitude(tgt))
    return 20 * np.log10(eps + signal / (error + eps))


def test_stft_magnitude_si_snr_matches_the_official_definition_in_numpy():
    from sepjax.losses import stft_magnitude_si_snr

    rng = np.random.default_rng(3)
    tgt = rng.standard_normal((3, 3001))
    est = np.stack([tgt[0] + 0.3 * rng.standard_normal(3001), 2.0 * tgt[1] + 0.05 * rng.standard_normal(3001),
                    -tgt[2] + 0.1 * rng.standard_normal(3001)])  # the last is anti-correlated: scale clamped
    ours = np.asarray(stft_magnitude_si_snr(jnp.asarray(est, jnp.float32), jnp.asarray(tgt, jnp.float32)))
    want = [numpy_official_magnitude_si_snr(e, t) for e, t in zip(est, tgt, strict=True)]
    # float32 norms over ~6000 bins: ~1e-5 relative, i.e. ~1e-4 dB; 2e-3 dB leaves 20x room.
    np.testing.assert_allclose(ours, want, atol=2e-3)
    assert want[2] < 0  # the clamp: a target scaled to 1% makes an anti-correlated estimate score badly


def test_the_paper_aux_loss_is_minus_its_mean_with_pit_over_each_head():
    from sepjax.losses import aux_head_loss, multi_loss, stft_magnitude_si_snr

    rng = np.random.default_rng(4)
    targets = jnp.asarray(rng.standard_normal((2, 2, 1, 2000)), jnp.float32)
    aux = targets[:, None] + 0.2 * jnp.asarray(rng.standard_normal((2, 2, 2, 1, 2000)), jnp.float32)
    config = CompositeLossConfig(permutation_invariant=True, stft_weight=0.0, aux_loss="stft_magnitude_si_snr")
    expected = -jnp.mean(stft_magnitude_si_snr(aux[:, 0, :, 0], targets[:, :, 0]))
    np.testing.assert_allclose(aux_head_loss(aux[:, 0], targets, None, config), expected, rtol=1e-6)
    np.testing.assert_allclose(aux_head_loss(aux[:, 0, ::-1], targets, None, config), expected, rtol=1e-6)  # PIT
    main = targets + 0.1
    loss, terms = multi_loss(main, aux, targets, None, config, 0.4)
    heads = [aux_head_loss(aux[:, h], targets, None, config) for h in range(2)]
    np.testing.assert_allclose(terms["aux_loss"], (heads[0] + heads[1]) / 2, rtol=1e-6)
    np.testing.assert_allclose(loss, 0.6 * terms["main_loss"] + 0.4 * terms["aux_loss"], rtol=1e-6)
    same = CompositeLossConfig(permutation_invariant=True, stft_weight=0.0)  # "main": the time-domain loss
    assert not np.isclose(multi_loss(main, aux, targets, None, same, 0.4)[1]["aux_loss"], terms["aux_loss"])
    with pytest.raises((ValueError, TypeError), match="aux_loss.*'mag'"):  # ours, or beartype's under pytest
        CompositeLossConfig(aux_loss="mag")
