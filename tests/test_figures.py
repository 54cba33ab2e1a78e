"""Review figures: colour spectrograms with axes, target beside estimate, and per-stem metric curves."""

import matplotlib.image
import numpy as np

from sepjax.figures import metric_history_figure, save_png, spectrogram_figure

RATE = 8000


def tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * freq * t))[None].astype(np.float32)


def test_a_spectrogram_figure_is_a_colour_image_of_the_expected_size_and_decodes_as_png(tmp_path):
    image = spectrogram_figure(tone(220), tone(220) + tone(1760) * 0.1, RATE, "soprano")
    assert image.shape == (340, 1000, 3) and image.dtype == np.uint8  # figsize (10, 3.4) at 100 dpi
    red, green, blue = (image[..., c].astype(int) for c in range(3))
    assert np.mean((red != green) | (green != blue)) > 0.2  # a colour map, not grey
    path = save_png(image, tmp_path / "soprano.png")
    decoded = matplotlib.image.imread(path)
    assert decoded.shape[:2] == (340, 1000)
    np.testing.assert_array_equal((decoded[..., :3] * 255).round().astype(np.uint8), image)


def test_target_and_estimate_panels_differ_where_the_signals_do():
    """The left half is the target, the right the estimate: an extra tone shows only on the right."""
    same = spectrogram_figure(tone(220), tone(220), RATE)
    other = spectrogram_figure(tone(220), tone(220) + tone(1760), RATE)
    left, right = slice(0, 440), slice(500, 880)
    np.testing.assert_array_equal(same[:, left], other[:, left])
    assert not np.array_equal(same[:, right], other[:, right])


def test_silent_and_non_finite_stems_still_draw():
    silent = np.zeros((1, RATE), np.float32)
    broken = silent.copy()
    broken[0, 10] = np.nan
    assert spectrogram_figure(silent, broken, RATE).shape == (340, 1000, 3)


def test_metric_history_figure_has_one_line_per_stem():
    image = metric_history_figure([250, 500, 750], {"soprano": [1.0, 3.0, 5.0], "alto": [0.0, 2.0, 3.0]}, "SI-SDR")
    assert image.shape == (360, 600, 3) and image.dtype == np.uint8
