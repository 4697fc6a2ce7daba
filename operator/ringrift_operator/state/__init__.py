"""The aiosqlite history store (the seed's StateManager) and its migrations."""
