"""drivestack: planning."""
