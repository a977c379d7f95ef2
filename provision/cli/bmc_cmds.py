"""Commands for this area; see provision/cli/__init__.py."""

COMMANDS: list = []
