"""livetrain's dashboard side: the live view (the `Dashboard` adapter, run logs, the Visdom
backend and its sender, the board, the terminal view, replay), the Visdom server we start
(`server`, with `protocol` shared with the clients), and the launch side (`dashboard.launch`:
plan, supervisor, one launch, past runs, the worker entry), which wires `trainers` runs to it."""
