"""Device side: ``python -m edgecnn`` runs the command line."""

from edgecnn.cli import cli_entry

if __name__ == "__main__":
    cli_entry()
