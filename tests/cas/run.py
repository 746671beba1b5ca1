"""Starts the test CAS server: run.py PORT SERVICE_PATTERN.
Environment: PVCE_CAS_DB (its SQLite file), PVCE_CAS_USERS (the users' JSON).
Creates the tables and one service pattern (every attribute released,
single sign-out on), then serves http://127.0.0.1:PORT/cas/ until killed."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'pvce_cas_settings')

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from cas_server.models import ReplaceAttributName, ServicePattern  # noqa: E402

port, pattern = sys.argv[1], sys.argv[2]
call_command('migrate', verbosity=0, interactive=False)
sp, _ = ServicePattern.objects.get_or_create(
    name='pvce-test', defaults={'pattern': pattern, 'pos': 1, 'single_log_out': True})
ReplaceAttributName.objects.get_or_create(name='*', replace='', service_pattern=sp)
call_command('runserver', f'127.0.0.1:{port}', use_reloader=False, use_threading=True,
             insecure_serving=True)
