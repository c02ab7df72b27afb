"""Logic of the users app."""
