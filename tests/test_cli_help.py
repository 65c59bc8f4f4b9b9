"""Every command a technician types says what it does: each subcommand and each of its arguments of
both CLIs (`gate-agent`, `park-central`, `park-demo`) has help text."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from central.cli import build_parser as central_parser
    from demo.__main__ import build_parser as demo_parser
    from gate_agent.cli import main as gate_main

    captured: dict[str, argparse.ArgumentParser] = {}
    real = argparse.ArgumentParser.parse_args

    def grab(self, *args, **kwargs):
        captured["gate-agent"] = self
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = grab
    try:
        with contextlib.suppress(SystemExit):
            gate_main(["status", "--config", "x"])
    finally:
        argparse.ArgumentParser.parse_args = real
    return {"gate-agent": captured["gate-agent"], "park-central": central_parser(), "park-demo": demo_parser()}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str | None, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            return {name: (helps.get(name), sub) for name, sub in action.choices.items()}
    return {}


@pytest.mark.parametrize("program", ["gate-agent", "park-central", "park-demo"])
def test_every_subcommand_and_argument_has_help(program):
    parser = _parsers()[program]
    missing = []
    subcommands = _subcommands(parser) or {"": ("(the program)", parser)}
    for name, (text, sub) in subcommands.items():
        if not text:
            missing.append(f"{program} {name}")
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not action.help and not action.choices:
                missing.append(f"{program} {name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_gate_agent_help_names_every_subcommand():
    out = io.StringIO()
    from gate_agent.cli import main

    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--help"])
    text = out.getvalue()
    for name in ("run", "status", "outbox", "store-info", "resync", "test-device", "backup", "restore", "set-mode"):
        assert f"    {name} " in text or f"    {name}\n" in text, name
