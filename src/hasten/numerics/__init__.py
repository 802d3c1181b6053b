"""Number formats, how a value fares in each, and a model's range audit."""
