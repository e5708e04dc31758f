"""``profiles``: the bedtime programs, listed or one in full."""

from __future__ import annotations

import click

from .app import complete_profile, json_option
from .results import ProfileListing, ProfileShown, show


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
    from ..paths import user_profiles_dir
    from ..programs.profiles import read_profiles

    found, broken = read_profiles(user_profiles_dir())
    show(ProfileListing(found, broken), as_json=as_json)
    return 0


@profiles.command("show")
@click.argument("name", shell_complete=complete_profile)
@json_option
def profiles_show(name: str, as_json: bool) -> int:
    """Show one profile in full: its steps and why it is built that way."""
    from ..paths import user_profiles_dir
    from ..programs.profiles import available_profiles, find_profile

    profile = find_profile(name, user_profiles_dir())
    path = available_profiles(user_profiles_dir()).get(name, name)
    show(ProfileShown(profile, str(path)), as_json=as_json)
    return 0
