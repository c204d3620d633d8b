"""What a log is, independent of where it comes from or goes to: the standard library only."""
