"""The benchmark: authsvc under gunicorn beside Better Auth, driven by wrk, read against limits."""
