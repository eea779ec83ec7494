"""`python -m wsssbed.cli`: the same as the `wsssbed` command."""

from wsssbed.cli import app

app(prog_name="wsssbed")
