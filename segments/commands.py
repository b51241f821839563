"""``pilot profiles refresh`` and ``pilot segment preview`` (a contract: DESIGN.md §5)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
from flask.cli import with_appcontext

from core.db import get_db


@click.group("profiles")
def profiles_group():
    """Spectator profiles, the derived table segment rules read."""


@profiles_group.command("refresh")
@click.option("--full", is_flag=True, help="Rebuild every profile (default: only what changed since the last refresh).")
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The date the profiles describe (default: today).",
)
@with_appcontext
def profiles_refresh(full, as_of):
    """Refresh spectator profiles: incrementally, or in full when asked, when never done or when
    the date changed (every life-cycle stage moves with the date)."""
    from segments.profiles import refresh_changed

    day = as_of.date() if as_of else dt.date.today()
    with get_db().session() as session:
        kind, written = refresh_changed(session, day, full=full)
        session.commit()
    click.echo(f"Profiles refreshed ({kind}) as of {day.isoformat()}: {written} rows written.")


@click.group("segment")
def segment_group():
    """Segments: evaluate rules."""


@segment_group.command("preview")
@click.argument("rule_file", metavar="RULE.json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Evaluate on this date (default: the profiles' date, else today).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the preview as one JSON object.")
@with_appcontext
def segment_preview(rule_file, as_of, as_json):
    """Evaluate a segment rule (DESIGN.md §7): its size and its spectators by organisation,
    counts under k hidden."""
    from segments.preview import preview
    from segments.rules import RuleError

    try:
        text = rule_file.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read {rule_file}: {exc.strerror or exc}") from None
    with get_db().session() as session:
        try:
            result = preview(session, text, as_of.date() if as_of else None)
        except RuleError as exc:
            raise click.ClickException(f"invalid rule in {rule_file}: {exc.message}") from None
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return

    def shown(value):
        return f"<{result['k']}" if value is None else str(value)

    click.echo(f"as of {result['as_of']}: {shown(result['size'])} spectators (counts under {result['k']} hidden)")
    for row in result["by_organisation"]:
        click.echo(f"  {row['organisation']:<28} {shown(row['spectators']):>9}")
    mix = ", ".join(f"{row['stage']} {shown(row['spectators'])}" for row in result["lifecycle"])
    click.echo(f"life cycle: {mix}")
    reach = result["contactable"]
    share = "" if reach["share"] is None else f" ({reach['share']:.1%})"
    click.echo(f"contactable: {shown(reach['spectators'])}{share}")


def init_app(app) -> None:
    app.cli.add_command(profiles_group)
    app.cli.add_command(segment_group)
