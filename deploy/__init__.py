"""drivestack: deploy."""
