"""drivestack: perception."""
