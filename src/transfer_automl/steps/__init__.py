"""One function per pipeline step: the composition root that the CLI and components call."""
