"""``python -m cdarts`` (also what ``torchrun -m cdarts`` runs)."""

from cdarts.cli.main import main

main()
