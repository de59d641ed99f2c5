"""Self-hosted file-conversion appliance."""
