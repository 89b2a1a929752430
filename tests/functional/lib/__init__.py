"""The functional tests' library: the servers they start (redis-server,
SMTP sinks, rabbitmq-server, postfix, nutcracker, HAProxy, Prometheus),
digestd and digestctl, configs, the data they write, and waits and process
control.  Fixtures are made from it in tests/functional/conftest.py only;
the test files, one folder per subsystem, import the rest from here.
"""
