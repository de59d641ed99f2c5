"""The HTTP API: CloudConvert API v2 compatible routes on Litestar, served by granian."""
