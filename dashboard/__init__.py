"""livetrain's dashboard: the plotting adapter, its backends, run logs and the Visdom server."""
