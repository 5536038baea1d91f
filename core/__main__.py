"""`python -m core` is the `edgewarden` command (useful where the script is not on PATH)."""

from core.cli import main

main()
