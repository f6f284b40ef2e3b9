"""What may serve a request, beyond sensitivity: residency and approval (`residency.py`) and pools of
equivalent models (`pools.py`). The planner (`routing.py`) calls them in the order of the policy."""
