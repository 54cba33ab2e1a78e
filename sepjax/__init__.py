"""sepjax: SepReformer source separation in JAX/Equinox."""

__version__ = "0.1.0"
