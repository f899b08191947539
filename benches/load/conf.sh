# shellcheck shell=bash
# The configurations load/run and load/callgrind give nginx and handoff (sourced, not run).

BODY='hello from the app!'  # 19 bytes + newline = 20-byte body

# nginx_conf DIR SERVER-BLOCKS [UPSTREAM-BLOCKS] [MAIN-DIRECTIVES]: DIR/nginx.conf, one
# worker, every path under DIR. Start it with `nginx -p DIR -c DIR/nginx.conf`.
nginx_conf() {
  mkdir -p "$1"
  cat >"$1/nginx.conf" <<CONF
worker_processes 1;
${4:-}
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  ${3:-}
  $2
}
CONF
}

# app_server PORT [LISTEN-OPTIONS]: the app, `return 200` with BODY.
app_server() {
  echo "server { listen 127.0.0.1:$1 ${2:-}backlog=4096; location / { return 200 \"$BODY\n\"; } }"
}

# proxy_location UPSTREAM: nginx as a keep-alive proxy to an upstream block.
proxy_location() {
  echo "location / { proxy_pass http://$1; proxy_http_version 1.1;
    proxy_set_header Connection \"\"; }"
}

# nginx_proxy_conf DIR PORT APP-PORT [MAIN-DIRECTIVES]: nginx as proxy to the app, upstream
# keepalive 1024 (64 churns connections at c=256, perf.md section 1).
nginx_proxy_conf() {
  nginx_conf "$1" "server { listen 127.0.0.1:$2 backlog=4096; $(proxy_location app) }" \
    "upstream app { server 127.0.0.1:$3; keepalive 1024; keepalive_requests 1000000; }" "${4:-}"
}

# handoff_conf FILE LISTEN ADMIN ADDRESS [old]: handoff, one thread, one upstream "app".
# Client connections are kept for any number of requests, as the nginx proxies above keep
# theirs (keepalive_requests 1000000). With "old", the keys of handoff before its own loop
# (3e3d761, which has no keepalive_requests) only.
handoff_conf() {
  local keepalive=""
  [[ ${5:-} == old ]] || keepalive="keepalive_requests = 0"
  cat >"$1" <<CONF
[server]
threads = 1
upstream_pool_size = 1024
$keepalive
[admin]
listen = "127.0.0.1:$3"
[log]
format = "json"
access = false
[[upstream]]
name = "app"
listen = "127.0.0.1:$2"
address = "$4"
CONF
}
