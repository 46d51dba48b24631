"""A quicker way to build events a parser makes by the hundred thousand.

A slots dataclass's keyword-only ``__init__`` takes about 2 µs for an event of
26 fields (matching keywords, filling defaults); this builds the same object,
every field set as ``__init__`` would, from positional values in about 0.8 µs.
The function is generated from the class's fields when the module loads, as
``dataclasses`` generates ``__init__`` itself, so a field added to the model
later is set too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, fields, is_dataclass
from typing import Any


def positional_constructor(cls: type, names: tuple[str, ...]) -> Callable[..., Any]:
    """A function of ``names`` (in order) that returns ``cls(**dict(zip(names, values)))``.

    Falls back to calling ``cls`` where building it field by field would not be the
    same: a frozen class, or one with ``__post_init__``.
    """
    assert is_dataclass(cls)
    every = fields(cls)
    unknown = set(names) - {f.name for f in every}
    assert not unknown, unknown
    params = ", ".join(names)
    if cls.__dataclass_params__.frozen or hasattr(cls, "__post_init__"):
        keywords = ", ".join(f"{n}={n}" for n in names)
        code = f"def build({params}):\n    return cls({keywords})\n"
        space: dict[str, Any] = {"cls": cls}
    else:
        space = {"cls": cls, "new": object.__new__}
        body = ["    self = new(cls)"]
        for f in every:
            if f.name in names:
                value = f.name
            elif f.default is not MISSING:
                space[f"default_{f.name}"] = f.default
                value = f"default_{f.name}"
            elif f.default_factory is not MISSING:
                space[f"factory_{f.name}"] = f.default_factory
                value = f"factory_{f.name}()"
            else:
                raise TypeError(f"{cls.__name__}.{f.name} has no default and is not given")
            body.append(f"    self.{f.name} = {value}")
        code = f"def build({params}):\n" + "\n".join(body) + "\n    return self\n"
    exec(code, space)  # our own text, made from the class's fields above
    return space["build"]
