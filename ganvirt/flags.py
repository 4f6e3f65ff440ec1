"""``ganvirt run``'s flags, built from the flow's pydantic parameters: one source of truth for
names, types, choices, defaults and help (the same text the Prefect UI's form shows).

Every field of ``VirtualizeParams`` and its nested models becomes a flag. Fields of the nested
models are named after the field (``train.batch_size`` → ``--batch-size``) unless ``NAMES``
gives another (fields that share a name across models, and the flags users already know). The
gate policy is one repeatable ``--gate FIELD=VALUE``. A flag left out is left out of the model,
so the model's own defaults, per-model ones included, apply.
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Literal

from pydantic import BaseModel

# (section, field) → flag, where the field's own name would be ambiguous or is not the known flag
NAMES: dict[tuple[str, str], list[str]] = {
    ("train", "channels"): ["--dcgan-channels"],  # --channels is the image folder's 1 or 3
    ("evaluation", "num_samples"): ["--eval-samples"],
    ("evaluation", "k"): ["--eval-k"],
    ("evaluation", "seed"): ["--eval-seed"],
    ("publication", "n"): ["-n", "--publish-n"],
    ("publication", "seed"): ["--publish-seed"],
    ("publication", "format"): ["--publish-format"],
    ("publication", "virtual"): ["--publish-virtual"],
}
SECTIONS = ("train", "evaluation", "publication")  # nested models with a flag per field
GATE = "gate"                                      # nested model set by --gate FIELD=VALUE
UNION_TAG = "model"                                # the field that picks a model of a union section


def flag_names(section: str, field: str) -> list[str]:
    return NAMES.get((section, field), ["--" + field.replace("_", "-")])


def dest(section: str, field: str) -> str:
    return f"{section}.{field}" if section else field


def _plain(annotation):
    """``X | None`` → X."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _help(info, defaults: dict[str, object] | None = None) -> str:
    """The field's description and its default; ``defaults`` maps each model of a union to its
    own default of this field (shown when they differ)."""
    shown = lambda v: "''" if v == "" else v
    text = info.description or ""
    if defaults and len({repr(v) for v in defaults.values()}) > 1:
        text += " (default: " + " / ".join(f"{shown(v)} ({tag})" for tag, v in defaults.items()) + ")"
    elif not info.is_required() and info.default_factory is None and info.default is not None:
        text += f" (default: {shown(info.default)})"
    return text.replace("%", "%%")


def add_field(parser, section: str, field: str, info, defaults: dict[str, object] | None = None) -> None:
    kind = _plain(info.annotation)
    kw: dict = {"dest": dest(section, field), "default": argparse.SUPPRESS, "help": _help(info, defaults)}
    if kind is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) is Literal and all(isinstance(c, str) for c in typing.get_args(kind)):
        kw["choices"] = list(typing.get_args(kind))
    elif typing.get_origin(kind) is Literal:  # Literal[1, 3]: ints, checked by pydantic (explain()'s one line)
        kw["type"] = type(typing.get_args(kind)[0])
        kw["metavar"] = "{" + ",".join(map(str, typing.get_args(kind))) + "}"
    else:
        kw["type"] = kind
        kw["metavar"] = flag_names(section, field)[-1].lstrip("-").replace("-", "_").upper()
    parser.add_argument(*flag_names(section, field), **kw)


def members(annotation) -> list[type[BaseModel]]:
    """The models of a section: one, or each model of a discriminated union."""
    return list(typing.get_args(annotation)) if typing.get_args(annotation) else [annotation]


def union_models(annotation) -> dict[str, type[BaseModel]]:
    """Each model of a union section by its ``UNION_TAG`` value; empty for a plain section."""
    found = members(annotation)
    return {m.model_fields[UNION_TAG].default: m for m in found} if len(found) > 1 else {}


def add_union(parser, section: str, info) -> None:
    """The flags of a section whose models form a union discriminated by ``UNION_TAG``: the tag
    is a choice of the models, and every other field has one flag, its help naming each
    model's own default."""
    models = union_models(info.annotation)
    # no argparse choices: an unknown name gets pydantic's check, and explain()'s one line
    parser.add_argument(*flag_names(section, UNION_TAG), dest=dest(section, UNION_TAG), default=argparse.SUPPRESS,
                        metavar="{" + ",".join(models) + "}", help="the model: " + ", ".join(
                            m.model_config.get("title", tag) for tag, m in models.items())
                        + " (default: see the section's title)")
    fields = dict.fromkeys(f for m in models.values() for f in m.model_fields if f != UNION_TAG)
    for field in fields:
        owners = {tag: m for tag, m in models.items() if field in m.model_fields}
        first = next(iter(owners.values())).model_fields[field]
        add_field(parser, section, field, first, {tag: m.model_fields[field].default for tag, m in owners.items()})


def add_model(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """A flag per field of ``model`` (a VirtualizeParams-like model) and ``--gate``."""
    for field, info in model.model_fields.items():
        if field in SECTIONS:
            group = parser.add_argument_group(f"{field} ({info.description})" if info.description else field)
            if union_models(info.annotation):
                add_union(group, field, info)
            else:
                for sub, sub_info in info.annotation.model_fields.items():
                    add_field(group, field, sub, sub_info)
        elif field == GATE:
            policy = info.annotation
            parser.add_argument("--gate", action="append", default=[], metavar="FIELD=VALUE", help=(
                "override a gate threshold, e.g. --gate min_tstr_accuracy=0.9 (fields: "
                + ", ".join(f"{k} (default {v.default})" for k, v in policy.model_fields.items()) + ")"))
        else:
            add_field(parser, "", field, info)


def values(args: argparse.Namespace, model: type[BaseModel]) -> dict:
    """The flags given, as the nested dict that ``model`` validates (``--gate`` included)."""
    out: dict = {k: getattr(args, k) for k in model.model_fields if hasattr(args, k) and k != GATE}
    for key, value in vars(args).items():
        section, _, field = key.rpartition(".")
        if section in SECTIONS:
            out.setdefault(section, {})[field] = value
    gate = {}
    for item in getattr(args, GATE, []):
        field, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--gate {item!r}: expected FIELD=VALUE, e.g. min_tstr_accuracy=0.9")
        gate[field.strip()] = value.strip()
    return out | ({GATE: gate} if gate else {})


def explain(exc, model: type[BaseModel]) -> str:
    """A pydantic ValidationError of ``model`` as one line that names each flag, the value given
    and what was expected: ``--steps 0 (train.steps): Input should be greater than or equal to 1``."""
    parts = []
    for e in exc.errors():
        loc, msg = [str(x) for x in e["loc"]], e["msg"]
        if len(loc) >= 3 and loc[0] in SECTIONS and loc[1] in union_models(model.model_fields[loc[0]].annotation):
            if e["type"] == "extra_forbidden":
                msg = f"not a setting of {flag_names(loc[0], UNION_TAG)[-1]} {loc[1]}"
            loc = [loc[0], *loc[2:]]  # a union's errors name the model first: (train, dcgan, steps)
        where = ".".join(loc)
        if len(loc) >= 2 and loc[0] == GATE:
            policy = model.model_fields[GATE].annotation
            if e["type"] == "extra_forbidden":
                msg = f"not a gate field; choose from {list(policy.model_fields)}"
            parts.append(f"--gate {loc[1]}={e.get('input')} ({where}): {msg}")
            continue
        if e["type"] == "union_tag_invalid" and loc and loc[0] in SECTIONS:
            tag, choices = e["ctx"]["tag"], sorted(t.strip(" '") for t in e["ctx"]["expected_tags"].split(","))
            parts.append(f"{flag_names(loc[0], UNION_TAG)[-1]} {tag!r}: unknown {UNION_TAG} {tag!r}; choose from {choices}")
            continue
        if len(loc) >= 2 and loc[0] in SECTIONS:
            flag = flag_names(loc[0], loc[1])[-1]
        elif loc and loc[0] in model.model_fields:
            flag = flag_names("", loc[0])[-1]
        else:
            flag = model.__name__
        parts.append(f"{flag} {e.get('input')!r} ({where}): {msg}")
    return "; ".join(parts)
