"""``profiles``: the bedtime programs, listed or one in full."""

from __future__ import annotations

import click

from .app import complete_profile, json_option


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def profiles(ctx: click.Context, as_json: bool) -> int | None:
    """List the bedtime programs (yours first, then the shipped ones).

    A profile file that cannot be used is listed as broken, with what is wrong
    in it, beside the others (with --json: an entry with ``file`` and ``error``).
    """
    if ctx.invoked_subcommand is not None:
        return None
    from ..config import user_profiles_dir
    from ..profiles import read_profiles
    from ..render import ProfileList, console, emit_json

    found, broken = read_profiles(user_profiles_dir())
    if as_json:
        emit_json({"kind": "profiles", "profiles": [
            {"name": p.name, "title": p.title, "minutes": p.total_minutes,
             "needs_cycle": p.needs_cycle, "path": str(path)}
            for p, path in found
        ], "broken": [entry.as_json() for entry in broken]})  # fmt: skip
        return 0
    console().print(ProfileList([profile for profile, _ in found], broken))
    return 0


@profiles.command("show")
@click.argument("name", shell_complete=complete_profile)
@json_option
def profiles_show(name: str, as_json: bool) -> int:
    """Show one profile in full: its steps and why it is built that way."""
    from ..config import user_profiles_dir
    from ..profiles import available_profiles, find_profile
    from ..render import console, emit_json, profile_view

    profile = find_profile(name, user_profiles_dir())
    path = available_profiles(user_profiles_dir()).get(name, name)
    if as_json:
        emit_json({"kind": "profile"} | profile.model_dump(mode="json"))
    else:
        console().print(profile_view(profile, str(path)))
    return 0
