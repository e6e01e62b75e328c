"""Data in: listing and reading raw inputs, sharding them into dataset versions, sample data."""
