"""Leader-only background loops and the loop runner (the seed's LoopManager)."""
