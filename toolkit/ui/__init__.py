"""What a user sees: plots (frames in, Figures out), paper styles, headline figures,
notebook widgets and the command line."""
