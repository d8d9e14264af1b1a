"""The command-line interface: parses, calls the library, renders. No algorithms here."""
