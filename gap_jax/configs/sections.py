"""Per-module config sections, generated from the modules' own dataclass fields: `head_args.<head>.<field>`
and `model_args.<model>.<field>`, each with the module's default, so a default is written once, in the module.

Only the chosen module's section reaches it. A value changed in another module's section would do nothing,
so it is refused (`chosen_args`), as is a field the chosen module does not have.
"""

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping

import ml_collections
from ml_collections.config_dict import placeholder

from gap_jax.errors import UserError

FLAX_FIELDS = ("parent", "name")  # every Flax module has them; neither is a hyper-parameter


def arguments(module, shared: tuple[str, ...] = ()) -> dict[str, object]:
  """A module's hyper-parameters (its dataclass fields but Flax's and `shared`) with their defaults; `module`
  is a class or a functools.partial of one, whose keywords override the class defaults."""
  cls, keywords = (module.func, module.keywords) if isinstance(module, functools.partial) else (module, {})
  out = {}
  for f in dataclasses.fields(cls):
    if f.name in FLAX_FIELDS or f.name in shared:
      continue
    if f.name in keywords:
      out[f.name] = keywords[f.name]
    elif f.default is not dataclasses.MISSING:
      out[f.name] = f.default
    else:
      raise TypeError(f"{cls.__name__}.{f.name} needs a default to be a config field")
  return out


def sections(modules: Mapping[str, object], shared: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """{name: {field: default}} for every module that has hyper-parameters."""
  out = ml_collections.ConfigDict()
  for name, module in modules.items():
    defaults = arguments(module, shared)
    if defaults:
      cls = module.func if isinstance(module, functools.partial) else module
      hints = typing.get_type_hints(cls)
      # A None default gets its annotated type, so that the command line can set it.
      out[name] = ml_collections.ConfigDict(
          {k: placeholder(_settable_type(hints[k])) if v is None else v for k, v in defaults.items()})
  return out


def _settable_type(annotation) -> type:
  """int for `int | None`, tuple for `tuple[int, ...] | None`."""
  if typing.get_origin(annotation) in (typing.Union, types.UnionType):
    annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
  return typing.get_origin(annotation) or annotation


def owners(field: str, modules: Mapping[str, object], shared: tuple[str, ...] = ()) -> list[str]:
  """The names of the modules that have `field` among their hyper-parameters."""
  return [name for name, module in modules.items() if field in arguments(module, shared)]


def takes(name: str, module, shared: tuple[str, ...] = ()) -> str:
  fields = list(arguments(module, shared))
  return f"{name} takes {', '.join(fields)}" if fields else f"{name} takes no arguments"


def refuse_unknown(kind: str, what: str, name: str, args, module, shared: tuple[str, ...] = ()) -> None:
  """Refuse a field of `args` that the module called `name` does not have."""
  unknown = [field for field in args if field not in arguments(module, shared)]
  if unknown:
    raise UserError(f"{kind}.{name}.{unknown[0]} is not a field of {what} {name!r}: {takes(name, module, shared)}")


def chosen_args(config, kind: str, what: str, modules: Mapping[str, object],
                shared: tuple[str, ...] = ()) -> dict:
  """The section of the module `config[what]` names in `config[kind]`, as keyword arguments. Refuses a field
  it does not have and a non-default value in any other module's section (where it would do nothing)."""
  chosen = config[what]
  all_args = config.get(kind) or {}
  for name, section in all_args.items():
    if not hasattr(section, "items"):  # set by a config written for the flat head_args/model_args of old
      owning = owners(name, modules, shared)
      raise UserError(f"{kind}.{name}={section!r}: each {what}'s fields are in its own section, "
                      f"{kind}.<{what}>.<field> ({name} is a field of {', '.join(owning) or f'no {what}'}); "
                      f"{takes(chosen, modules[chosen], shared)}")
    if name == chosen:
      refuse_unknown(kind, what, name, section, modules[name], shared)
      continue
    defaults = arguments(modules[name], shared) if name in modules else {}
    for field, value in section.items():
      if field not in defaults or _frozen(value) != _frozen(defaults[field]):
        raise UserError(
            f"{kind}.{name}.{field}={value!r} is set but {what} is {chosen!r}, where it would do nothing: "
            f"{takes(chosen, modules[chosen], shared)} (--config.{kind}.{chosen}.<field>=...)")
  return {field: _frozen(value) for field, value in dict(all_args.get(chosen) or {}).items()}


def _frozen(value):
  """Tuples for lists, at every depth: config.json stores tuples as lists, and a Flax module's fields
  should be hashable."""
  return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value
