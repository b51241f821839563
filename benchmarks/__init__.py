"""The code behind `pilot bench` (DESIGN.md §12): the benchmark and its helpers."""


def init_app(app) -> None:
    """Register ``pilot bench`` (the benchmark is a tool of the command line, not a page)."""
    from benchmarks import commands

    commands.init_app(app)
