"""The sample workload honouring the workload contract (fake but well-formed games, models,
results).
"""
