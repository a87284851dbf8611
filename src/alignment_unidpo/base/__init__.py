"""The base layer: small helpers every stage may import; it imports no other part of the package."""
