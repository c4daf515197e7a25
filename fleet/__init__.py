"""drivestack: fleet."""
