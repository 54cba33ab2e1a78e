"""What every family's config must satisfy, checked once for all of them."""

import dataclasses
import typing
from typing import Any, Literal

from sepjax.errors import InputError

DType = Literal["float32", "bfloat16"]


class ConfigMethods:
    """What every family's frozen config dataclass offers besides its fields."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Any:
        """A copy with `changes` applied, checked again by the config's `__post_init__`."""
        return dataclasses.replace(self, **changes)


def check_model_config(config: Any, positive: tuple[str, ...], problems: list[str]) -> None:
    """What every family's config must satisfy, plus the family's own `problems`: heads divide dim, sizes are
    positive, dropout is a probability below 1, and each `Literal` field holds one of its choices."""
    problems = list(problems)
    if config.dim % max(config.heads, 1):
        problems.append(f"dim={config.dim} must be divisible by heads={config.heads}")
    problems += [f"{name}={getattr(config, name)} must be >= 1" for name in positive if getattr(config, name) < 1]
    if not 0.0 <= config.dropout < 1.0:
        problems.append(f"dropout={config.dropout} must be in [0, 1)")
    for f in dataclasses.fields(config):
        choices = typing.get_args(f.type) if typing.get_origin(f.type) is Literal else ()
        if choices and getattr(config, f.name) not in choices:
            problems.append(f"{f.name}={getattr(config, f.name)!r} must be one of {list(choices)}")
    if problems:
        raise InputError(f"invalid {type(config).__name__}: " + "; ".join(problems))
