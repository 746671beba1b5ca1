"""Settings of the test CAS server (PyPI django-cas-server) that the sign-in
tests start on a loopback port (tests/cas/run.py). The users and their
attributes come from the JSON file $PVCE_CAS_USERS (auth.py), read at every
sign-in so a test can change what the directory says between two sign-ins.
Nothing here reaches the network: no CDN components (jQuery is served
locally), no version check."""
import os

import xstatic.pkg.jquery

SECRET_KEY = 'pvce-test-cas-only'
DEBUG = False
ALLOWED_HOSTS = ['127.0.0.1', 'localhost']
INSTALLED_APPS = [
    'django.contrib.auth',
    'django.contrib.contenttypes',
    'django.contrib.sessions',
    'django.contrib.messages',
    'django.contrib.staticfiles',
    'cas_server',
]
MIDDLEWARE = [
    'django.contrib.sessions.middleware.SessionMiddleware',
    'django.middleware.common.CommonMiddleware',
    'django.middleware.csrf.CsrfViewMiddleware',
    'django.contrib.auth.middleware.AuthenticationMiddleware',
    'django.contrib.messages.middleware.MessageMiddleware',
]
TEMPLATES = [{
    'BACKEND': 'django.template.backends.django.DjangoTemplates',
    'APP_DIRS': True,
    'OPTIONS': {'context_processors': [
        'django.template.context_processors.request',
        'django.contrib.auth.context_processors.auth',
        'django.contrib.messages.context_processors.messages',
    ]},
}]
ROOT_URLCONF = 'pvce_cas_urls'
DATABASES = {'default': {
    'ENGINE': 'django.db.backends.sqlite3',
    'NAME': os.environ['PVCE_CAS_DB'],
}}
USE_TZ = True
TIME_ZONE = 'UTC'
STATIC_URL = '/static/'
# The login page's jQuery from PyPI's XStatic-jQuery, served by runserver
# (run.py asks it to serve static files although DEBUG is off).
STATICFILES_DIRS = [('jquery', xstatic.pkg.jquery.BASE_DIR)]
CAS_AUTH_CLASS = 'pvce_cas_auth.FileAuthUser'
CAS_NEW_VERSION_HTML_WARNING = False
CAS_NEW_VERSION_EMAIL_WARNING = False
CAS_SHOW_POWERED = False
CAS_COMPONENT_URLS = {k: 'data:,' for k in (
    'bootstrap3_css', 'bootstrap3_js', 'html5shiv', 'respond',
    'bootstrap4_css', 'bootstrap4_js')}
CAS_COMPONENT_URLS['jquery'] = STATIC_URL + 'jquery/jquery.min.js'
CAS_SLO_TIMEOUT = 5
