"""Everything that trains: tasks, parametrizations, ensemble models, optimizers, the
training loop, probes and subspace training. Imports nothing above it."""
