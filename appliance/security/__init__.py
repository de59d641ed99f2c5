"""Security primitives: API keys, signed URLs and the outbound-address guard."""
