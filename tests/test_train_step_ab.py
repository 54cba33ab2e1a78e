"""`benchmarks/train_step_ab.py`: how a variant's model is built. The timing itself is a benchmark's run
(docs/performance.md records them)."""

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from train_step_ab import build_variant  # noqa: E402

from sepjax.models.sepreformer import stages  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step_ab.py"


def unrolled(model):
    network = model.network
    return [s.unroll for s in network.enc_stages], network.bottleneck.unroll, [s.unroll for s in network.dec_stages]


def test_a_variant_sets_the_unrolled_rates_for_its_model_only():
    before = stages.CPU_FAST_UNROLLED_RATES
    assert unrolled(build_variant("sepreformer-tiny", {"unrolled_rates": 0})) == ([False] * 2, False, [False] * 2)
    assert unrolled(build_variant("sepreformer-tiny", {"unrolled_rates": 1})) == ([True, False], False, [False, True])
    assert before == stages.CPU_FAST_UNROLLED_RATES
    fast = build_variant("sepreformer-tiny", {})
    assert fast.config.kernels == "cpu_fast" and unrolled(fast) == ([True, True], False, [True, True])
    assert build_variant("sepreformer-tiny", {"overrides": {"kernels": "reference"}}).config.kernels == "reference"


def test_unknown_variant_keys_are_refused_before_anything_is_built():
    result = subprocess.run([sys.executable, str(SCRIPT), "--variant", "a", "{}", "--variant", "b", '{"unroll": 1}'],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "variants ['b']: the keys are overrides, compiler_options and unrolled_rates" in result.stderr


def test_a_variant_that_is_not_a_json_object_is_refused_by_name():
    for spec, reason in (("{unroll", "is not JSON"), ("[1]", "is not a JSON object")):
        result = subprocess.run([sys.executable, str(SCRIPT), "--variant", "a", "{}", "--variant", "b", spec],
                                capture_output=True, text=True)
        assert result.returncode == 2
        assert f"variant 'b': {spec!r} {reason}" in result.stderr
