"""livetrain's trainers: data, from-scratch ops, models and the training loop."""
