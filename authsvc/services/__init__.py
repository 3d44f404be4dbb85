"""The rules: signup saga, sessions and tokens, reconcile. No Flask, no SQL."""
