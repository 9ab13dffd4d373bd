"""The API's routers, one per domain; `starter.api.create_app` mounts them."""
