"""drivestack: sim."""
