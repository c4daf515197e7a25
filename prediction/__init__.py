"""drivestack: prediction."""
