"""The generic queue: jobs, claims, leases, the worker loop, transports, migrations; it knows no
meal plan.
"""
