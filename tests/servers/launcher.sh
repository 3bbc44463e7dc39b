#!/bin/sh
# A launcher that runs the server without exec, as `npm start` or run.sh do:
# the shell stays the server's parent.
python3 -m impl.select_server --port "$1" --log-level WARNING
echo "server exited"
