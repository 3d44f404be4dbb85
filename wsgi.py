"""The WSGI entry point: `gunicorn wsgi:app`. Production unless AUTHSVC_ENV=development."""

import os

from authsvc import create_app
from authsvc.config import load_settings

app = create_app(load_settings(os.environ, default_env="production"))
