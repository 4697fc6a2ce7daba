"""The kubectl plugin ``kubectl-ringrift``: the loop at a glance for cluster users.

``main`` parses the command line and talks to the API server (``fetch``); ``views`` turns the
objects it read into plain, JSON-ready summaries; ``tables`` prints them the way kubectl prints
tables; ``plot`` draws Elo curves with matplotlib, imported only when asked for.
"""
