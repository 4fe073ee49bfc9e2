"""``python -m cdarts``: the ``cdarts`` command (what torchrun runs on every process)."""

from cdarts.cli.main import main

main()
