"""Command-line overrides checked before Hydra runs, so that a typo is one line that says what is valid.

Hydra's own message for a misspelled key (``method.betaa=0.5``) is six lines
that suggest ``+method.betaa=...``, which would add the typo as a new key; for
an unknown option (``method=nope``) it is a paragraph. :func:`check_overrides`
composes the command's config with the overrides first (the first value of each
sweep, for ``-m``) and turns a failure into one line: the key or option, the
valid ones of that group and, where one is close, a did-you-mean.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

__all__ = ["check_overrides"]


def _first_values(args: list[str]) -> list[str] | None:
    """The overrides, each sweep replaced by its first value; None when they do not parse (Hydra says why)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except HydraException:
        return None
    out = []
    for o in parsed:
        if o.is_hydra_override():
            continue
        if o.is_sweep_override():
            first = next(iter(o.sweep_string_iterator()), None)
            if first is None:
                return None
            out.append(f"{o.get_key_element()}={first}")
        else:
            out.append(o.input_line)
    return out


def _suggest(bad: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(bad, valid, n=1, cutoff=0.6)
    listed = ", ".join(valid[:20]) + (", ..." if len(valid) > 20 else "")
    return (f"did you mean {close[0]}? " if close else "") + f"valid: {listed}"


def _explain(err: Exception, config_dir: Path, command: str, overrides: list[str]) -> str | None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import DictConfig, OmegaConf

    text = f"{err}\n{err.__cause__ or ''}"
    found = re.search(r"Key '([^']+)' is not in struct\s+full_key: (\S+)", text)
    if found:
        name, full = found.group(1), found.group(2)
        parent = full.rpartition(".")[0]
        others = [o for o in overrides if not re.match(rf"{re.escape(full)}[.=]", o.lstrip("+~"))]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose(config_name=command, overrides=others, return_hydra_config=True)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        keys = sorted(str(k) for k in node.keys() if k not in ("_target_", "hydra")) \
            if isinstance(node, DictConfig) else []
        chosen = cfg.hydra.runtime.choices.get(parent) if parent else None
        where = f"{parent}={chosen}" if chosen else (parent or "the config")
        return f"{full} is not a setting of {where}; {_suggest(name, keys)}"
    missing = re.search(r"Could not find '([^']+)/([^']+)'", text)
    if missing:
        group, option = missing.group(1), missing.group(2)
        options = sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
        return f"{group}={option} is not an option of {group}; {_suggest(option, options)}"
    return None


def check_overrides(config_dir: Path, command: str, args: list[str]) -> str | None:
    """One line saying what is wrong with ``args`` (plain overrides of ``mtbench <command>``), or None."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, MissingConfigException

    overrides = _first_values([a for a in args if not a.startswith("-")])
    if overrides is None:
        return None
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            compose(config_name=command, overrides=overrides)
    except (ConfigCompositionException, MissingConfigException) as err:
        try:
            return _explain(err, config_dir, command, overrides)
        except Exception:  # noqa: BLE001 - no better line than Hydra's own: let Hydra report it
            return None
    finally:
        GlobalHydra.instance().clear()
    return None
