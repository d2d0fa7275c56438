"""The Typer CLI: thin commands over the library; it parses, calls one function, prints."""
