"""End-to-end tests: the service under gunicorn, driven by Chromium and by HTTP."""
