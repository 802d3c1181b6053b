"""The inference study: workloads, passes, runtimes, search, trials, export."""
