"""`python -m mupc_sweep` is the `mupc-sweep` command."""

from .cli import app

app(prog_name="mupc-sweep")
