"""Real stand-ins for external services, run on loopback: see `provider_server` for the hosted providers."""
