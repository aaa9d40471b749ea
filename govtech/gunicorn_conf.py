"""gunicorn settings shared by the image and docker-compose (`--config python:govtech.gunicorn_conf`).

The access log names the method, the path and the status, never the query string or the
Referer: staff search residents by name in the admin (`?q=山田花子`), and gunicorn's default
format would write that name into the logs with every request line and every page it leads to.
"""

accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
