"""Settings: typed, from the environment, a ``.env`` file and options; secrets kept secret."""
