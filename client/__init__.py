"""The light Python client's sources: `followups_client/` (the `followups-client` distribution,
pyproject.toml here) and `generate.py`, the development tool that writes its generated modules
from the API's OpenAPI document (`make client`)."""
