"""Running it: errors, secrets masked, logs, metrics, monitoring and the doctor's checks."""
