"""The seed's managers as pure logic over plain snapshots: rank, plan, decide, score. No I/O, no
clock reads.
"""
