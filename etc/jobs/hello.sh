#!/bin/sh
# The script of etc/jobs/hello.jdl, shipped in its input sandbox.
echo "Hello from dirac-like"
