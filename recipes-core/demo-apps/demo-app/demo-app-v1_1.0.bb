# nooelint: oelint.var.bbclassextend - makes a device artifact; no native or SDK variant
# Release 1.0: bin/demo-app, etc/demo-app.conf, share/welcome.txt.
require demo-app.inc
