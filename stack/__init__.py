"""drivestack: stack."""
