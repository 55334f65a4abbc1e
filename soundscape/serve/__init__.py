"""`soundscape serve`: many listeners over HTTP from one model (hub, listeners, encoding, access,
metrics, Ray Serve).

May import: stream/ and everything below it. Never play/ or render/.
"""
