"""The command line: parses, validates, calls the library and renders; no logic of its own."""
