"""Click commands, one module each; registered in :data:`curate.cli.COMMANDS`."""
