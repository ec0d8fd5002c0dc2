"""One module per dashboard page: functions from a store connection to plain data."""
