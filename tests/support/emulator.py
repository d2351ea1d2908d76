"""pytest fixtures that start the Dataverse emulator (filled in with the emulator)."""
